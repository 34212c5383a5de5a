// Package storetest is the contract of sluice.Store as a test that any implementation
// runs against itself (the file store, the JetStream store), so that they agree on
// every rule the HTTP server relies on.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Open returns a fresh store (or one where keys from earlier calls are never reused),
// as o says; it is closed when the test ends.
type Open func(t *testing.T, o Options) sluice.ArchivableStore

// Options say what store a test needs.
type Options struct {
	// MaxStreamSize is the store's limit on a stream's length; 0 means none.
	MaxStreamSize int64
	// Archive, if set, is where the store reads streams whose live copy it removed.
	Archive sluice.Archive
	// ArchiveMaxAge, if set, is the store's retention of archived streams, with a sweep
	// every few tens of milliseconds.
	ArchiveMaxAge time.Duration
}

var keys int

func newKey(t *testing.T) string {
	keys++
	return fmt.Sprintf("contract-%d-%d", time.Now().UnixNano(), keys)
}

// Run runs the contract's tests as subtests of t.
func Run(t *testing.T, open Open) {
	t.Run("AppendRules", func(t *testing.T) { appendRules(t, open) })
	t.Run("CreatePurgeVersion", func(t *testing.T) { createPurgeVersion(t, open) })
	t.Run("ReadChanged", func(t *testing.T) { readChanged(t, open) })
	t.Run("CreateOptions", func(t *testing.T) { createOptions(t, open) })
	t.Run("WriteRules", func(t *testing.T) { writeRules(t, open) })
	t.Run("ConcurrentWrites", func(t *testing.T) { concurrentWrites(t, open) })
	t.Run("Archivable", func(t *testing.T) { archivable(t, open) })
	t.Run("ArchiveMaxAge", func(t *testing.T) { archiveMaxAge(t, open) })
	t.Run("Writers", func(t *testing.T) { writers(t, open) })
	t.Run("WritersOutliveHandles", func(t *testing.T) { writersOpen(t, open) })
	t.Run("Forks", func(t *testing.T) { forks(t, open) })
	t.Run("Expiry", func(t *testing.T) { expiry(t, open) })
}

// Create makes key in s and fails the test unless it is new.
func Create(t testing.TB, s sluice.Store, key string) {
	t.Helper()
	_, created, err := s.Create(context.Background(), key, sluice.CreateOptions{})
	if err != nil || !created {
		t.Fatalf("Create(%q) = %v, %v; want true, nil", key, created, err)
	}
}

// MustOpen returns a handle on key that is released when the test ends (Release is
// idempotent, so a test may release it earlier).
func MustOpen(t testing.TB, s sluice.Store, key string) sluice.Stream {
	t.Helper()
	h, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	t.Cleanup(h.Release)
	return h
}

// MustAppend appends p at off and fails the test on any error.
func MustAppend(t testing.TB, h sluice.Stream, off int64, p []byte) sluice.Info {
	t.Helper()
	info, err := h.Append(context.Background(), off, p)
	if err != nil {
		t.Fatalf("Append(%d, %d bytes): %v", off, len(p), err)
	}
	return info
}

// appendRules: "Bytes below the stream's length are already stored: they are checked
// (ErrMismatch) and skipped ... An offset beyond the length is ErrGap; new bytes for a
// closed stream are ErrClosed. Nothing is stored on error", ErrTooLarge, idempotent Close.
func appendRules(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{MaxStreamSize: 16})
	key := newKey(t)
	if _, created, err := s.Create(ctx, key, sluice.CreateOptions{}); !created || err != nil {
		t.Fatalf("Create = %v, %v", created, err)
	}
	h := MustOpen(t, s, key)
	steps := []struct {
		name    string
		off     int64
		p       string
		close   bool
		wantErr error
		wantLen int64
	}{
		{"first bytes", 0, "hello ", false, nil, 6},
		{"resend with new bytes", 0, "hello wor", false, nil, 9},
		{"resend inside", 3, "lo wor", false, nil, 9},
		{"resend differing", 0, "HELLO", false, sluice.ErrMismatch, 9},
		{"gap", 10, "x", false, sluice.ErrGap, 9},
		{"too large", 9, "ld and then some", false, sluice.ErrTooLarge, 9},
		{"up to the limit", 9, "ld!", false, nil, 12},
		{"close", 0, "", true, nil, 12},
		{"close again", 0, "", true, nil, 12},
		{"new bytes when closed", 12, "more", false, sluice.ErrClosed, 12},
		{"resend of old bytes when closed", 6, "world!", false, nil, 12},
	}
	for _, st := range steps {
		var info sluice.Info
		var err error
		if st.close {
			info, err = h.Close(ctx)
		} else {
			info, err = h.Append(ctx, st.off, []byte(st.p))
		}
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if info.Length != st.wantLen {
			t.Errorf("%s: length %d, want %d", st.name, info.Length, st.wantLen)
		}
	}
	if got, info := readAll(t, h); string(got) != "hello world!" || !info.Closed {
		t.Fatalf("Read = %q, %+v; want the 12 bytes, closed", got, info)
	}
}

// readAll reads h from 0 to its length; a Read may return fewer bytes than asked.
func readAll(t *testing.T, h sluice.Stream) ([]byte, sluice.Info) {
	t.Helper()
	var got []byte
	for {
		b, info, _, err := h.Read(context.Background(), make([]byte, 64), int64(len(got)))
		if err != nil {
			t.Fatalf("Read(%d): %v", len(got), err)
		}
		got = append(got, b...)
		if len(b) == 0 || int64(len(got)) >= info.Length {
			return got, info
		}
	}
}

// createPurgeVersion: Create reports whether the stream is new; Open and Purge of an
// unknown key are ErrNotFound; Purge frees the key, and the new stream's Version differs.
func createPurgeVersion(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	if _, err := s.Open(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open(unknown) = %v", err)
	}
	if err := s.Purge(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Purge(unknown) = %v", err)
	}
	s.Create(ctx, key, sluice.CreateOptions{})
	if _, created, err := s.Create(ctx, key, sluice.CreateOptions{}); created || err != nil {
		t.Fatalf("second Create = %v, %v; want false, nil", created, err)
	}
	h := MustOpen(t, s, key)
	h.Append(ctx, 0, []byte("old"))
	v1 := h.Info().Version
	if err := s.Purge(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.Read(context.Background(), make([]byte, 8), 0); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Read of a purged stream = %v", err)
	}
	if _, created, err := s.Create(ctx, key, sluice.CreateOptions{}); !created || err != nil {
		t.Fatalf("Create after purge = %v, %v", created, err)
	}
	if info := MustOpen(t, s, key).Info(); info.Length != 0 || info.Version == v1 || info.Version == "" {
		t.Fatalf("new stream of a purged key: %+v, old version %q", info, v1)
	}
}

// readChanged: Read "returns no bytes when off is at the length ... and a channel that
// is closed when the stream changes after it".
func readChanged(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	s.Create(ctx, key, sluice.CreateOptions{})
	w, r := MustOpen(t, s, key), MustOpen(t, s, key)
	b, info, changed, err := r.Read(context.Background(), make([]byte, 8), 0)
	if err != nil || len(b) != 0 || info.Length != 0 {
		t.Fatalf("Read of an empty stream = %q, %+v, %v", b, info, err)
	}
	w.Append(ctx, 0, []byte("abc"))
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("changed not closed by an append")
	}
	b, _, changed, _ = r.Read(context.Background(), make([]byte, 8), 1)
	if string(b) != "bc" {
		t.Fatalf("Read(1) = %q, want bc", b)
	}
	w.Close(ctx)
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("changed not closed by Close")
	}
	if _, info, _, _ := r.Read(context.Background(), make([]byte, 8), 3); !info.Closed || info.Length != 3 {
		t.Fatalf("Info after close: %+v", info)
	}
}
