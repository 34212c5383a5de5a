package sluice

import (
	"context"
	"fmt"
	"io"
	"sync"
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
//
// An Archiver pulls the streams to archive from it, as Litestream's replicas wait on
// their database's Notify: it waits on Notify, then asks ClosedSince what closed. The
// store never calls into its archiver, so either can be made first.
type ArchivableStore interface {
	Store
	// Notify returns a channel that is closed when the next stream closes through this
	// store.
	Notify() <-chan struct{}
	// ClosedSince returns the keys of the streams closed through this store from
	// cursor on (0 is the first close since the store opened), in order, and the cursor
	// of the next close. complete is false when the store no longer remembers some of
	// them (it keeps the last few thousand): the caller then lists LiveClosed.
	ClosedSince(cursor uint64) (keys []string, next uint64, complete bool)
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

// Leaser decides which of several instances archives a stream, when several share a
// store (cluster mode): the one that holds its lease. A single instance needs none.
type Leaser interface {
	// Lease takes the right to archive the stream of key for ttl, or renews it if this
	// instance holds it; it reports whether this instance holds it now.
	Lease(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Unlease gives the right back, once the stream is archived.
	Unlease(ctx context.Context, key string) error
}

// ArchiveReadTimeout bounds one read from an archive, so that a stalled object store
// cannot hold a follower (or a graceful shutdown waiting for it) for ever.
const ArchiveReadTimeout = time.Minute

// ArchiveReader reads one archived object at any offset through one sequential
// request: reads that follow each other cost one request (one GET), and a read elsewhere
// ends it and opens another there. Both stores read archived streams through it, so that
// they agree on timeouts and on what the end of an object means. It is safe for
// concurrent use; reads are serialised.
type ArchiveReader struct {
	archive Archive
	key     string

	mu     sync.Mutex
	rc     io.ReadCloser
	cancel context.CancelFunc // ends rc's request
	off    int64              // offset of rc's next byte
}

// NewArchiveReader returns a reader of the object of key in a.
func NewArchiveReader(a Archive, key string) *ArchiveReader {
	return &ArchiveReader{archive: a, key: key}
}

// ReadAt reads len(p) bytes of the object at off, as io.ReaderAt does: fewer only when
// the object ends first, with io.EOF. A read ends with ctx, and after
// ArchiveReadTimeout.
func (r *ArchiveReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rc != nil && r.off != off {
		r.end()
	}
	if r.rc == nil {
		// The request outlives this read (the next one continues it), so it has its
		// own context, which a read's ctx and timeout cut short.
		rctx, cancel := context.WithCancel(context.Background())
		rc, err := r.archive.Open(rctx, r.key, off)
		if err != nil {
			cancel()
			return 0, err
		}
		r.rc, r.cancel, r.off = rc, cancel, off
	}
	stop := context.AfterFunc(ctx, r.cancel)
	t := time.AfterFunc(ArchiveReadTimeout, r.cancel)
	n, err := io.ReadFull(r.rc, p)
	timedOut := !t.Stop()
	stop()
	r.off += int64(n)
	switch {
	case err == nil:
		return n, nil
	case timedOut:
		err = fmt.Errorf("read %s at %d: the archive took over %v: %w", r.key, r.off, ArchiveReadTimeout, err)
	case ctx.Err() != nil:
		err = fmt.Errorf("read %s at %d: %w", r.key, r.off, ctx.Err())
	case err == io.ErrUnexpectedEOF:
		err = io.EOF
	}
	r.end()
	return n, err
}

// end ends the current request; the caller holds r.mu.
func (r *ArchiveReader) end() {
	r.cancel()
	r.rc.Close()
	r.rc, r.cancel = nil, nil
}

// Close ends the current request, if any. The reader may be used again after.
func (r *ArchiveReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rc != nil {
		r.end()
	}
	return nil
}
