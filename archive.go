package sluice

import (
	"context"
	"io"
	"time"
)

// Archive keeps the bytes of closed streams, one object per key, exactly as published
// (no framing), somewhere cheaper and more durable than the live store: a directory, or
// an S3-compatible bucket. Keys are valid (see ValidKey). An unknown key is ErrNotFound.
type Archive interface {
	// Put stores size bytes read from r as the object of key, all or nothing: the object
	// appears, replacing any earlier one, only once it is complete. Put reads r once, in
	// order, and never holds all of it in memory.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Open returns the object's bytes from offset off to its end. Reading them
	// sequentially costs one request; the caller closes the reader.
	Open(ctx context.Context, key string, off int64) (io.ReadCloser, error)
	// Stat returns the size of the object.
	Stat(ctx context.Context, key string) (size int64, err error)
	// Delete removes the object; deleting a missing object is no error.
	Delete(ctx context.Context, key string) error
}

// ArchiveRecord is what a store remembers of a confirmed archive of a stream.
type ArchiveRecord struct {
	// Version is the stream's Info.Version: a key reused after a purge is a new stream.
	Version string `json:"version"`
	// Size and CRC32C (Castagnoli) are the archived object's, checked against the bytes
	// read from the store.
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
	// At is when the archive was confirmed; the live copy goes Retention after it.
	At time.Time `json:"at"`
}

// LiveClosed is a closed stream whose live copy is still in the store.
type LiveClosed struct {
	Key, Version string
	// Archived is nil until the stream has been archived.
	Archived *ArchiveRecord
}

// ArchivableStore is a Store whose closed streams can move to an Archive and stay
// readable: once the live copy is removed, its streams read from the archive.
type ArchivableStore interface {
	Store
	// LiveClosed lists the closed streams that still have a live copy, so that an
	// Archiver starting up finishes what a stopped one left.
	LiveClosed(ctx context.Context) ([]LiveClosed, error)
	// MarkArchived records a confirmed archive of the stream of key, if its version is
	// rec.Version; otherwise (purged, or replaced) it is ErrNotFound.
	MarkArchived(ctx context.Context, key string, rec ArchiveRecord) error
	// Archived returns the record of the stream's archive, or nil if it has none.
	Archived(ctx context.Context, key string) (*ArchiveRecord, error)
	// RemoveLive deletes the live copy of an archived stream of the given version; the
	// stream stays readable, from the archive. A stream not archived is left as it is.
	RemoveLive(ctx context.Context, key, version string) error
}
