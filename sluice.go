// Package sluice holds the domain of Sluice, a server for live byte streams over HTTP:
// what a stream is, the errors callers branch on, and the small interface a store of
// streams implements. It depends on no backend; the packages named after what they wrap
// (file, nats, s3, http, jwt, metrics) depend on it (docs/design.md).
//
// A stream is an append-only sequence of bytes with a key, a length and a state, open or
// closed. Bytes at an offset never change, and a closed stream never grows again.
package sluice

import (
	"context"
	"errors"
	"mime"
	"strings"
	"time"
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
	// ErrConfigMismatch means Create found the stream made with another Config; the
	// stream is left as it is.
	ErrConfigMismatch = errors.New("stream exists with another configuration")
	// ErrGone means the stream was deleted but its bytes are kept for the forks that
	// read them (soft-deleted): it can be neither read, written, nor created again
	// until its last fork goes.
	ErrGone = errors.New("stream deleted, kept for its forks")
	// ErrContentType means an append's content type, or its form (raw bytes appended to
	// a stream of JSON records), does not match the stream's.
	ErrContentType = errors.New("content type does not match the stream's")
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
	// Config is what the stream was made with.
	Config Config
}

// Config is what a stream is made with, fixed for its life. The zero Config is a
// stream of bytes of no declared type that never expires, as busl's streams are.
type Config struct {
	// ContentType is the media type of the stream's bytes as its creator declared it
	// ("text/plain", "application/json; charset=utf-8"), or "" for none, which the
	// Durable Streams side reports as application/octet-stream. A JSON stream keeps
	// message boundaries (see Records).
	ContentType string `json:"content_type,omitempty"`
	// TTL, if positive, makes the stream expire that long after it was last written or
	// read (a sliding window).
	TTL time.Duration `json:"ttl,omitempty"`
	// ExpiresAt, if not zero, makes the stream expire at that instant.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Fork, if set, makes the stream a fork: its bytes below Fork.Base are those of
	// another stream, read from it, and its own come after.
	Fork *Fork `json:"fork,omitempty"`
}

// Fork says which stream a fork reads its first bytes from.
type Fork struct {
	// Source is the key of the stream forked, and SourceVersion its Info.Version then:
	// a source purged and made again is another stream.
	Source        string `json:"source"`
	SourceVersion string `json:"source_version"`
	// Base is the offset where the fork's own bytes start: below it, it reads the
	// source's.
	Base int64 `json:"base"`
	// At and Sub are the position the fork was asked for (Durable Streams'
	// Stream-Fork-Offset, -1 when not given, and Stream-Fork-Sub-Offset), kept so that
	// the same request again finds the same fork.
	At  int64 `json:"at"`
	Sub int64 `json:"sub,omitempty"`
}

// MediaType is the content type without its parameters, in lower case; "" for none.
func (c Config) MediaType() string {
	if c.ContentType == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(c.ContentType); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(c.ContentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// Matches reports whether a stream made with c is the one asked for by o: the same
// media type (parameters aside, as HTTP compares them; none is
// application/octet-stream), TTL, expiry and fork.
func (c Config) Matches(o Config) bool {
	return orBytes(c.MediaType()) == orBytes(o.MediaType()) && c.TTL == o.TTL &&
		c.ExpiresAt.Equal(o.ExpiresAt) && c.Fork.matches(o.Fork)
}

// orBytes is mt, or application/octet-stream for none.
func orBytes(mt string) string {
	if mt == "" {
		return "application/octet-stream"
	}
	return mt
}

func (f *Fork) matches(o *Fork) bool {
	if f == nil || o == nil {
		return f == o
	}
	return f.Source == o.Source && f.Sub == o.Sub && (o.At < 0 || o.At == f.At || o.At == f.Base)
}

// CreateOptions say how Store.Create makes a stream.
type CreateOptions struct {
	Config
	// Data is the stream's first bytes, stored with its creation: no reader ever sees
	// the stream without them.
	Data []byte
	// Closed makes the stream closed from the start, its Data its whole content.
	Closed bool
}

// Write is one append at a stream's end, applied at once: the store picks the offset
// (the stream's length), and no other append comes between its bytes, nor between its
// bytes and its close.
type Write struct {
	// Data is the bytes to append; none is allowed when Close is set.
	Data []byte
	// Close closes the stream after Data, in the same step, so that no reader ever sees
	// the stream closed without them, nor them without the close.
	Close bool
	// Seq, if not empty, must be greater (byte by byte) than the Seq of the stream's
	// last Write that had one, or the write is ErrSeqOrder: writers that coordinate
	// through it never store out of order.
	Seq string
	// Producer, if set, names the write of an idempotent producer: a retry of one the
	// stream already has is a duplicate, not stored again (see Writers.Admit).
	Producer *Producer
}

// Written is what a Write did.
type Written struct {
	// Info is the stream's state after the write.
	Info
	// Duplicate is true when the write was a retry of one the stream has: nothing was
	// stored.
	Duplicate bool
	// Producer is the state of the write's producer after it, if it had one: for a
	// duplicate, the last write the stream has of it.
	Producer ProducerState
}

// Store keeps streams by key. Keys are valid (see ValidKey) before they reach a store.
type Store interface {
	// Create makes a stream as opts say and returns its Info. It reports whether the
	// stream is new; an existing stream is left as it is, never wiped or reopened, and
	// if it was made with a Config that does not match opts.Config (Config.Matches), or
	// it is closed and opts asks for an open one or the other way round, Create returns
	// its Info and ErrConfigMismatch.
	Create(ctx context.Context, key string, opts CreateOptions) (info Info, created bool, err error)
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
	// Write appends w at the stream's end, whatever its length, so that concurrent
	// writers each add their bytes once, in some order (stores serialise them per
	// stream). New bytes for a closed stream are ErrClosed; a close of a closed stream
	// is not an error. Nothing is stored on error; when Write returns, the bytes and the
	// close survive a crash of the process.
	Write(ctx context.Context, w Write) (Written, error)
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
