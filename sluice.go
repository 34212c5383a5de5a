// Package sluice holds the domain of Sluice, a server for live byte streams over HTTP:
// what a stream is, the errors callers branch on, and the small interface a store of
// streams implements. It depends on no backend; the packages named after what they wrap
// (file, http, sse) depend on it.
//
// A stream is an append-only sequence of bytes with a key, a length and a state, open or
// closed. Bytes at an offset never change, and a closed stream never grows again.
package sluice

import (
	"context"
	"errors"
)

// Errors that callers branch on. Stores wrap them with %w and a few words of context.
var (
	// ErrNotFound means the stream does not exist (or was purged).
	ErrNotFound = errors.New("stream not found")
	// ErrGap means an append starts beyond the stream's length; nothing was stored.
	ErrGap = errors.New("offset beyond stream length")
	// ErrMismatch means resent bytes differ from the bytes already stored at their offsets.
	ErrMismatch = errors.New("resent bytes differ from stored bytes")
	// ErrClosed means the append would add bytes to a closed stream.
	ErrClosed = errors.New("stream is closed")
	// ErrTooLarge means the append would make the stream longer than the store allows.
	ErrTooLarge = errors.New("stream too large")
	// ErrTooManyStreams means the store holds as many open streams as it allows.
	ErrTooManyStreams = errors.New("too many open streams")
)

// Info is what a store knows of a stream at one moment.
type Info struct {
	// Length is the offset of the next byte to be written.
	Length int64
	// Closed is true once the stream will never grow again.
	Closed bool
	// Version changes when a key is reused after a purge, so that validators such as an
	// HTTP ETag never match bytes of an earlier stream of the same key.
	Version string
}

// Store keeps streams by key. Keys are valid (see ValidKey) before they reach a store.
type Store interface {
	// Create makes an empty open stream. It reports whether the stream is new; an
	// existing stream is left as it is, never wiped or reopened.
	Create(ctx context.Context, key string) (created bool, err error)
	// Open returns a handle on an existing stream, or ErrNotFound.
	Open(ctx context.Context, key string) (Stream, error)
	// Purge deletes a stream and its bytes for good, ending its followers' reads with
	// ErrNotFound, so that the key is free for a new stream. Unknown keys are ErrNotFound.
	Purge(ctx context.Context, key string) error
}

// Stream is a handle on one stream, held by one request for its duration. A handle is
// safe for concurrent use, and several handles on one stream see the same bytes.
type Stream interface {
	// Info reports the stream's length and state now.
	Info() Info
	// Append stores p as the bytes at offset off. Bytes below the stream's length are
	// already stored: they are checked (ErrMismatch) and skipped, so that a producer can
	// resend after a reconnect without duplicating anything. An offset beyond the length
	// is ErrGap; new bytes for a closed stream are ErrClosed. Nothing is stored on error.
	// When Append returns, the bytes survive a crash of the process.
	Append(ctx context.Context, off int64, p []byte) (Info, error)
	// Close marks the stream closed; it is idempotent. When Close returns, the stream's
	// bytes and its state are on stable storage.
	Close(ctx context.Context) (Info, error)
	// Read returns bytes stored from offset off on, without waiting for new ones: either
	// a prefix of p or a read-only view of the store's memory that stays valid and
	// unchanged. It returns no bytes when off is at the length. It also returns the
	// stream's Info as of the read and a channel that is closed when the stream changes
	// after it, so a follower can wait without missing an append. A purged stream
	// returns ErrNotFound.
	// ctx bounds what the read may wait for (the NATS store fetches over the network).
	Read(ctx context.Context, p []byte, off int64) (b []byte, info Info, changed <-chan struct{}, err error)
	// Release gives the handle back. The handle must not be used after.
	Release()
}
