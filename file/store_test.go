package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
	"github.com/sluicehq/sluice/internal/tail"
)

// failAfter bounds every wait in these tests; nothing waits this long unless a bug hangs it.
const failAfter = 30 * time.Second

var ctx = context.Background()

// openStore opens a store under dir and closes it when the test ends (Close is idempotent,
// so a test may also close it earlier to reopen the directory).
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return s
}

// Helpers shared with the other stores' tests.
var (
	create     = storetest.Create     // makes a key, failing the test unless it is new
	open       = storetest.MustOpen   // a handle, released when the test ends
	mustAppend = storetest.MustAppend // fails the test on any error
)

// readAll reads h from off to its current length with a buffer of bufSize bytes.
func readAll(t testing.TB, h sluice.Stream, off int64, bufSize int) []byte {
	t.Helper()
	buf := make([]byte, bufSize)
	var got []byte
	for {
		b, info, _, err := h.Read(context.Background(), buf, off)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(b) == 0 {
			if off != info.Length {
				t.Fatalf("Read(%d) returned no bytes before the length %d", off, info.Length)
			}
			return got
		}
		got = append(got, b...)
		off += int64(len(b))
	}
}

// contents returns the whole stream key through a fresh handle.
func contents(t testing.TB, s *Store, key string) []byte {
	t.Helper()
	h := open(t, s, key)
	defer h.Release()
	return readAll(t, h, 0, 4096)
}

// dataFile is the bytes of key's data file on disk.
func dataFile(t testing.TB, s *Store, key string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.streamDir(key), "data"))
	if err != nil {
		t.Fatalf("read data file of %q: %v", key, err)
	}
	return b
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(failAfter):
		t.Fatalf("%s: changed channel not closed within %v", what, failAfter)
	}
}

// TestCreate proves "Create makes an empty open stream. It reports whether the stream is
// new; an existing stream is left as it is, never wiped or reopened."
func TestCreate(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	create(t, s, "a")
	h := open(t, s, "a")
	if info := h.Info(); info.Length != 0 || info.Closed || info.Version == "" {
		t.Fatalf("new stream Info = %+v; want empty, open, with a version", info)
	}
	mustAppend(t, h, 0, []byte("kept"))
	version := h.Info().Version

	_, created, err := s.Create(ctx, "a", sluice.CreateOptions{})
	if err != nil || created {
		t.Fatalf("Create(existing) = %v, %v; want false, nil", created, err)
	}
	if got := contents(t, s, "a"); string(got) != "kept" {
		t.Fatalf("bytes after Create(existing) = %q; want %q", got, "kept")
	}
	if v := h.Info().Version; v != version {
		t.Fatalf("Version after Create(existing) = %q; want unchanged %q", v, version)
	}

	// A closed stream is not reopened by Create: asked for an open one, Create reports
	// the mismatch, and the closed one as it is.
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if info, created, err := s.Create(ctx, "a", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrConfigMismatch) || created || !info.Closed {
		t.Fatalf("Create(closed) = %+v, %v, %v; want the closed stream, false, ErrConfigMismatch", info, created, err)
	}
	h2 := open(t, s, "a")
	if info := h2.Info(); !info.Closed || info.Length != 4 {
		t.Fatalf("Info after Create(closed) = %+v; want closed, length 4", info)
	}

	if _, err := s.Open(ctx, "unknown"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open(unknown) = %v; want ErrNotFound", err)
	}
}

// TestMaxOpenStreams proves "MaxOpenStreams is how many open (not closed) streams may
// exist": creating one more is ErrTooManyStreams; closing or purging an open stream frees
// a slot, purging a closed one frees none; OpenStreams counts them, also after a reopen.
func TestMaxOpenStreams(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxOpenStreams: 2})
	count := func(want int) {
		t.Helper()
		if n := s.OpenStreams(); n != want {
			t.Fatalf("OpenStreams() = %d; want %d", n, want)
		}
	}
	count(0)
	create(t, s, "a")
	create(t, s, "b")
	count(2)
	if _, created, err := s.Create(ctx, "c", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) || created {
		t.Fatalf("Create beyond the limit = %v, %v; want false, ErrTooManyStreams", created, err)
	}
	if _, err := s.Open(ctx, "c"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("refused stream exists: Open = %v", err)
	}
	// At the limit, an existing key is still just "not new", not an error.
	if _, created, err := s.Create(ctx, "a", sluice.CreateOptions{}); created || err != nil {
		t.Fatalf("Create(existing) at the limit = %v, %v; want false, nil", created, err)
	}
	count(2)

	// Closing a stream frees its slot; closing it twice frees only one.
	ha := open(t, s, "a")
	for range 2 {
		if _, err := ha.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	count(1)
	create(t, s, "c")
	count(2)
	if _, _, err := s.Create(ctx, "d", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) {
		t.Fatalf("Create beyond the limit = %v; want ErrTooManyStreams", err)
	}

	// Purging an open stream (with a live handle) frees its slot.
	hb := open(t, s, "b")
	if err := s.Purge(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	hb.Release()
	count(1)
	create(t, s, "d")
	count(2)

	// Purging a closed stream frees nothing: it held no slot.
	ha.Release()
	if err := s.Purge(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	count(2)
	if _, _, err := s.Create(ctx, "e", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) {
		t.Fatalf("Create after purging a closed stream = %v; want ErrTooManyStreams", err)
	}

	// On disk now: "c" closed, "d" open. A reopened store counts them and enforces the
	// limit with that count.
	hc := open(t, s, "c")
	if _, err := hc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	hc.Release()
	count(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{MaxOpenStreams: 2})
	count(1)
	create(t, s, "e")
	count(2)
	if _, _, err := s.Create(ctx, "f", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) {
		t.Fatalf("Create beyond the limit after reopen = %v; want ErrTooManyStreams", err)
	}
}

// TestAppend proves the append rules: "Bytes below the stream's length are already stored:
// they are checked (ErrMismatch) and skipped ... An offset beyond the length is ErrGap ...
// Nothing is stored on error", and MaxStreamSize ("the largest length a stream may reach")
// is ErrTooLarge. Every case starts from an open stream holding "hello world" (11 bytes)
// in a store whose limit is 16 bytes.
func TestAppend(t *testing.T) {
	const start = "hello world"
	cases := []struct {
		name string
		off  int64
		p    string
		err  error
		want string // the stream's bytes after the append
	}{
		{"sequential", 11, "!", nil, "hello world!"},
		{"resend all from 0", 0, "hello world", nil, start},
		{"resend a middle part", 3, "lo wo", nil, start},
		{"resend from 0 with new bytes", 0, "hello world!!", nil, "hello world!!"},
		{"partial overlap", 6, "world, ok", nil, "hello world, ok"},
		{"empty at length", 11, "", nil, start},
		{"empty below length", 4, "", nil, start},
		{"mismatch within", 0, "HELLO", sluice.ErrMismatch, start},
		{"mismatch on the last stored byte", 10, "D", sluice.ErrMismatch, start},
		{"mismatch with new bytes", 6, "WORLD!!", sluice.ErrMismatch, start},
		{"mismatch before matching new bytes", 9, "lX!", sluice.ErrMismatch, start},
		{"gap of one byte", 12, "x", sluice.ErrGap, start},
		{"gap far", 1 << 20, "x", sluice.ErrGap, start},
		{"empty beyond length", 12, "", sluice.ErrGap, start},
		{"up to the limit", 11, "12345", nil, "hello world12345"},
		{"one byte over the limit", 11, "123456", sluice.ErrTooLarge, start},
		{"overlap up to the limit", 6, "world12345", nil, "hello world12345"},
		{"overlap over the limit", 6, "world123456", sluice.ErrTooLarge, start},
	}
	s := openStore(t, t.TempDir(), Options{MaxStreamSize: 16})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := fmt.Sprintf("append/%d", i)
			create(t, s, key)
			h := open(t, s, key)
			mustAppend(t, h, 0, []byte(start))
			info, err := h.Append(ctx, c.off, []byte(c.p))
			if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
				t.Fatalf("Append(%d, %q) error = %v; want %v", c.off, c.p, err, c.err)
			}
			if info.Length != int64(len(c.want)) || info.Closed {
				t.Errorf("Append returned %+v; want length %d, open", info, len(c.want))
			}
			if got := contents(t, s, key); string(got) != c.want {
				t.Errorf("stream holds %q; want %q", got, c.want)
			}
			// "Nothing is stored" holds on disk too: the data file is the stream.
			if got := dataFile(t, s, key); string(got) != c.want {
				t.Errorf("data file holds %q; want %q", got, c.want)
			}
		})
	}
}

// TestAppendClosed proves the closed-stream rule: "new bytes for a closed stream are
// ErrClosed", while a resend that lies entirely within the stored bytes is accepted (a
// retry of a finished upload is harmless), and nothing is stored on error.
func TestAppendClosed(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	create(t, s, "c")
	h := open(t, s, "c")
	mustAppend(t, h, 0, []byte("hello"))
	if info, err := h.Close(ctx); err != nil || !info.Closed || info.Length != 5 {
		t.Fatalf("Close = %+v, %v; want closed at 5", info, err)
	}
	cases := []struct {
		off int64
		p   string
		err error
	}{
		{0, "hello", nil},
		{1, "ell", nil},
		{5, "", nil},
		{0, "", nil},
		{5, "!", sluice.ErrClosed},
		{3, "lo!", sluice.ErrClosed},
		{0, "hello!", sluice.ErrClosed},
		{0, "HELLO", sluice.ErrMismatch},
		{6, "x", sluice.ErrGap},
	}
	for _, c := range cases {
		info, err := h.Append(ctx, c.off, []byte(c.p))
		if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Append(%d, %q) on a closed stream = %v; want %v", c.off, c.p, err, c.err)
		}
		if info.Length != 5 || !info.Closed {
			t.Errorf("Append(%d, %q) returned %+v; want closed at 5", c.off, c.p, info)
		}
	}
	if got := dataFile(t, s, "c"); string(got) != "hello" {
		t.Fatalf("data file = %q; want %q", got, "hello")
	}
}

// TestPersistence proves "When Close returns, the stream's bytes and its state are on
// stable storage" and that the length is the data file: a store reopened from the same
// directory sees closed streams closed with their bytes, and open streams open, taking
// appends at the right offset. Close is idempotent.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SyncInterval: time.Second})
	closedBytes := randBytes(1, 100_000)
	openBytes := randBytes(2, 70_001)

	create(t, s, "done")
	h := open(t, s, "done")
	mustAppend(t, h, 0, closedBytes[:50_000])
	mustAppend(t, h, 50_000, closedBytes[50_000:])
	first, err := h.Close(ctx)
	if err != nil || !first.Closed || first.Length != int64(len(closedBytes)) {
		t.Fatalf("Close = %+v, %v", first, err)
	}
	second, err := h.Close(ctx)
	if err != nil || second != first {
		t.Fatalf("second Close = %+v, %v; want %+v, nil", second, err, first)
	}
	h.Release()

	create(t, s, "live/log")
	h = open(t, s, "live/log")
	mustAppend(t, h, 0, openBytes)
	liveVersion := h.Info().Version
	h.Release()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{SyncInterval: time.Second})
	if n := s.OpenStreams(); n != 1 {
		t.Fatalf("OpenStreams after reopen = %d; want 1", n)
	}

	h = open(t, s, "done")
	if info := h.Info(); info != first {
		t.Fatalf("closed stream after reopen: Info = %+v; want %+v", info, first)
	}
	if got := readAll(t, h, 0, 10_000); !bytes.Equal(got, closedBytes) {
		t.Fatalf("closed stream after reopen: %d bytes differ from the %d written", len(got), len(closedBytes))
	}
	if _, err := h.Append(ctx, first.Length, []byte("x")); !errors.Is(err, sluice.ErrClosed) {
		t.Fatalf("append to a reopened closed stream = %v; want ErrClosed", err)
	}
	if _, err := os.Stat(filepath.Join(s.streamDir("done"), "closed")); err != nil {
		t.Fatalf("closed marker: %v", err)
	}

	h = open(t, s, "live/log")
	if info := h.Info(); info.Closed || info.Length != int64(len(openBytes)) || info.Version != liveVersion {
		t.Fatalf("open stream after reopen: Info = %+v; want open at %d, version %q", info, len(openBytes), liveVersion)
	}
	if _, err := h.Append(ctx, int64(len(openBytes))+1, []byte("x")); !errors.Is(err, sluice.ErrGap) {
		t.Fatalf("append past the reopened length = %v; want ErrGap", err)
	}
	// A producer resending its tail after the restart, with new bytes after it.
	more := append(slices.Clone(openBytes[len(openBytes)-10:]), "tail"...)
	if info := mustAppend(t, h, int64(len(openBytes))-10, more); info.Length != int64(len(openBytes))+4 {
		t.Fatalf("Append after reopen returned %+v; want length %d", info, len(openBytes)+4)
	}
	want := append(slices.Clone(openBytes), "tail"...)
	if got := readAll(t, h, 0, 8192); !bytes.Equal(got, want) {
		t.Fatalf("open stream after reopen and append: %d bytes, want %d, differ", len(got), len(want))
	}
	if info, err := h.Close(ctx); err != nil || !info.Closed {
		t.Fatalf("Close after reopen = %+v, %v", info, err)
	}
	if n := s.OpenStreams(); n != 0 {
		t.Fatalf("OpenStreams = %d; want 0", n)
	}
	if got := dataFile(t, s, "live/log"); !bytes.Equal(got, want) {
		t.Fatalf("data file is not the stream's bytes exactly")
	}
}

// TestVersion proves "Version changes when a key is reused after a purge", and that it
// does not change otherwise: not with appends, closing or reopening the store.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	create(t, s, "k")
	h := open(t, s, "k")
	v1 := h.Info().Version
	mustAppend(t, h, 0, []byte("abc"))
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := h.Info().Version; v != v1 {
		t.Fatalf("Version changed by append and close: %q -> %q", v1, v)
	}
	h.Release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	if v := open(t, s, "k").Info().Version; v != v1 {
		t.Fatalf("Version changed by reopening the store: %q -> %q", v1, v)
	}
	seen := map[string]bool{v1: true}
	for range 3 {
		if err := s.Purge(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		create(t, s, "k")
		v := open(t, s, "k").Info().Version
		if seen[v] {
			t.Fatalf("Version %q reused after purge and create", v)
		}
		seen[v] = true
	}
}

// TestPurge proves "Purge deletes a stream and its bytes for good, ending its followers'
// reads with ErrNotFound, so that the key is free for a new stream. Unknown keys are
// ErrNotFound."
func TestPurge(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	if err := s.Purge(ctx, "nope"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Purge(unknown) = %v; want ErrNotFound", err)
	}

	create(t, s, "p")
	w := open(t, s, "p")
	mustAppend(t, w, 0, []byte("old bytes"))
	oldVersion := w.Info().Version
	r := open(t, s, "p")
	buf := make([]byte, 64)
	b, _, changed, err := r.Read(context.Background(), buf, 9)
	if err != nil || len(b) != 0 {
		t.Fatalf("Read at length = %q, %v", b, err)
	}
	if isClosed(changed) {
		t.Fatal("changed closed before the purge")
	}

	if err := s.Purge(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, changed, "follower after purge")
	if _, _, _, err := r.Read(context.Background(), buf, 0); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("follower Read after purge = %v; want ErrNotFound", err)
	}
	if _, err := w.Append(ctx, 9, []byte("x")); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Append on a purged handle = %v; want ErrNotFound", err)
	}
	if _, err := w.Close(ctx); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Close on a purged handle = %v; want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, "p"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open after purge = %v; want ErrNotFound", err)
	}
	if err := s.Purge(ctx, "p"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("second Purge = %v; want ErrNotFound", err)
	}
	// "for good": nothing of the stream is left on disk.
	if _, err := os.Stat(s.streamDir("p")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stream directory after purge: %v", err)
	}
	if left, _ := os.ReadDir(s.path("trash")); len(left) != 0 {
		t.Fatalf("trash holds %d entries after purge", len(left))
	}

	// The key is free; the new stream shares nothing with the old one, even while
	// handles on the old one are still held.
	create(t, s, "p")
	n := open(t, s, "p")
	if info := n.Info(); info.Length != 0 || info.Closed || info.Version == oldVersion {
		t.Fatalf("recreated stream Info = %+v; want empty, open, new version (old %q)", info, oldVersion)
	}
	mustAppend(t, n, 0, []byte("new"))
	if _, _, _, err := r.Read(context.Background(), buf, 0); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("old follower Read after recreate = %v; want ErrNotFound", err)
	}
	r.Release()
	w.Release()
	if got := contents(t, s, "p"); string(got) != "new" {
		t.Fatalf("recreated stream holds %q; want %q", got, "new")
	}
	if got := dataFile(t, s, "p"); string(got) != "new" {
		t.Fatalf("recreated data file holds %q; want %q", got, "new")
	}
}

// TestReadChanged proves "a channel that is closed when the stream changes after it, so a
// follower can wait without missing an append": Append (of new bytes), Close and Purge
// close it, and nothing that leaves the stream as it was closes it early.
func TestReadChanged(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	create(t, s, "ch")
	w := open(t, s, "ch")
	r := open(t, s, "ch")
	buf := make([]byte, 64)

	read := func(off int64, want string) (sluice.Info, <-chan struct{}) {
		t.Helper()
		b, info, changed, err := r.Read(context.Background(), buf, off)
		if err != nil || string(b) != want {
			t.Fatalf("Read(%d) = %q, %v; want %q", off, b, err, want)
		}
		if isClosed(changed) {
			t.Fatalf("Read(%d): changed is already closed", off)
		}
		return info, changed
	}

	_, ch := read(0, "")
	mustAppend(t, w, 0, []byte("abc"))
	if !isClosed(ch) {
		t.Fatal("changed not closed by Append")
	}
	info, ch := read(0, "abc")
	if info.Length != 3 {
		t.Fatalf("Read info = %+v; want length 3", info)
	}
	_, ch2 := read(1, "bc")
	if ch2 != ch {
		t.Fatal("two reads of an unchanged stream returned different channels")
	}

	// Appends that store nothing change nothing.
	for _, a := range []struct {
		off int64
		p   string
	}{{3, ""}, {0, "abc"}, {1, "b"}, {0, "X"}, {5, "x"}} {
		w.Append(ctx, a.off, []byte(a.p))
		if isClosed(ch) {
			t.Fatalf("changed closed by Append(%d, %q), which stored nothing", a.off, a.p)
		}
	}

	// A new reader attaching (and leaving) changes nothing either.
	r2 := open(t, s, "ch")
	read2, _, _, err := r2.Read(context.Background(), make([]byte, 8), 0)
	if err != nil || string(read2) != "abc" {
		t.Fatalf("second reader Read = %q, %v", read2, err)
	}
	r2.Release()
	if isClosed(ch) {
		t.Fatal("changed closed by another reader attaching or releasing")
	}

	mustAppend(t, w, 2, []byte("cd"))
	if !isClosed(ch) {
		t.Fatal("changed not closed by an overlapping Append with new bytes")
	}
	_, ch = read(3, "d")

	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Fatal("changed not closed by Close")
	}
	info, ch = read(4, "")
	if !info.Closed || info.Length != 4 {
		t.Fatalf("Read after Close: info %+v; want closed at 4", info)
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Fatal("changed closed by a second Close, which changed nothing")
	}
	if err := s.Purge(ctx, "ch"); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Fatal("changed not closed by Purge")
	}
}

// TestReadTailAndDisk proves Read returns the right bytes from every source: "either a
// prefix of p or a read-only view of the store's memory that stays valid and unchanged".
// With a 64 KiB tail, it writes 100 KiB before a reader attaches (read from disk), then
// 300 KiB more in odd-size chunks while it follows (read from the tail, whose oldest
// blocks are dropped and then read from disk), and finally reads from offsets inside
// blocks and around every 32 KiB block boundary and tail boundary.
func TestReadTailAndDisk(t *testing.T) {
	const tailSize = 64 << 10
	s := openStore(t, t.TempDir(), Options{TailSize: tailSize, SyncInterval: time.Hour})
	want := randBytes(3, 400<<10+123)
	const pre = 100<<10 + 17
	create(t, s, "t")
	w := open(t, s, "t")
	r := open(t, s, "t")
	mustAppend(t, w, 0, want[:pre])

	buf := make([]byte, 10_000)
	b, _, _, err := r.Read(context.Background(), buf, 5)
	if err != nil || !bytes.Equal(b, want[5:5+len(buf)]) || &b[0] != &buf[0] {
		t.Fatalf("Read(5) of bytes from before the reader: %d bytes, %v; want the %d-byte buffer filled from disk", len(b), err, len(buf))
	}

	type view struct {
		off int64
		b   []byte
	}
	var views []view
	sizes := []int{1, 7001, 32 << 10, 5, 40_000, 333, 65_536, 12_345, 32<<10 - 1}
	off := int64(pre)
	for i := 0; off < int64(len(want)); i++ {
		n := min(sizes[i%len(sizes)], len(want)-int(off))
		mustAppend(t, w, off, want[off:off+int64(n)])
		b, info, _, err := r.Read(context.Background(), buf, off)
		if err != nil || info.Length != off+int64(n) {
			t.Fatalf("Read(%d) after append: info %+v, %v", off, info, err)
		}
		// A follower at the length gets the new bytes from the tail: a view, not a copy,
		// that ends at most at the end of the block the read starts in.
		end := min(off+int64(n), (off/tail.BlockSize+1)*tail.BlockSize)
		if !bytes.Equal(b, want[off:end]) || !inTail(r, off, b) {
			t.Fatalf("Read(%d) after appending %d bytes: %d bytes (in the tail: %v); want a view of want[%d:%d] in the tail",
				off, n, len(b), inTail(r, off, b), off, end)
		}
		views = append(views, view{off, b})
		off += int64(n)
	}

	sn := r.(*handle).st.snap.Load()
	tailOff := sn.Tail.Start()
	if tailOff <= pre || sn.Info.Length-tailOff > tailSize+tail.BlockSize || sn.Tail.Blocks() == 0 {
		t.Fatalf("tail holds [%d, %d) in %d blocks; want at most %d bytes, starting after the %d bytes written before the reader",
			tailOff, sn.Info.Length, sn.Tail.Blocks(), tailSize+tail.BlockSize, pre)
	}

	// Every view handed out stays valid and unchanged, including those of dropped blocks.
	for _, v := range views {
		if !bytes.Equal(v.b, want[v.off:v.off+int64(len(v.b))]) {
			t.Fatalf("view of %d bytes at %d changed after later appends", len(v.b), v.off)
		}
	}

	length := int64(len(want))
	offsets := []int64{0, 1, pre - 1, pre, pre + 1, tailOff - 1, tailOff, tailOff + 1, tailOff - tailOff%tail.BlockSize, length - 1, length}
	for o := int64(tail.BlockSize); o < length; o += tail.BlockSize {
		offsets = append(offsets, o-1, o, o+1)
	}
	for o := int64(0); o < length; o += 4099 {
		offsets = append(offsets, o)
	}
	for _, o := range offsets {
		// One read: from the tail it is a view up to the end of its block; from disk it
		// fills the buffer, stopping where the tail starts.
		b, _, _, err := r.Read(context.Background(), buf, o)
		if err != nil {
			t.Fatalf("Read(%d): %v", o, err)
		}
		if o >= tailOff {
			end := min(length, (o/tail.BlockSize+1)*tail.BlockSize)
			if o == length {
				end = length
			}
			if int64(len(b)) != end-o || (len(b) > 0 && !inTail(r, o, b)) {
				t.Fatalf("Read(%d) in the tail: %d bytes; want a view of %d", o, len(b), end-o)
			}
		} else if int64(len(b)) != min(int64(len(buf)), tailOff-o) || &b[0] != &buf[0] {
			t.Fatalf("Read(%d) from disk: %d bytes; want the buffer filled up to the tail at %d", o, len(b), tailOff)
		}
		if !bytes.Equal(b, want[o:o+int64(len(b))]) {
			t.Fatalf("Read(%d): %d bytes differ from those written", o, len(b))
		}
		// And from there to the end, across any mix of disk and tail.
		if o%3 == 0 || o == pre || o == tailOff-1 {
			if got := readAll(t, r, o, len(buf)); !bytes.Equal(got, want[o:]) {
				t.Fatalf("reading from %d: %d bytes, want %d, differ", o, len(got), len(want)-int(o))
			}
		}
	}

	// A small buffer is never overrun on disk reads.
	small := make([]byte, 7)
	if b, _, _, err := r.Read(context.Background(), small, 3); err != nil || !bytes.Equal(b, want[3:10]) {
		t.Fatalf("Read(3) into 7 bytes = %v, %v", b, err)
	}

	// With the last reader gone the tail is dropped, and reads still get every byte.
	r.Release()
	if sn := w.(*handle).st.snap.Load(); sn.Tail.Blocks() != 0 {
		t.Fatalf("tail keeps %d blocks with no reader", sn.Tail.Blocks())
	}
	if got := contents(t, s, "t"); !bytes.Equal(got, want) {
		t.Fatal("stream bytes differ from those written after the reader left")
	}
}

// inTail reports whether b, read from h at off, is a view of the stream's in-memory tail
// rather than a copy.
func inTail(h sluice.Stream, off int64, b []byte) bool {
	v, ok := h.(*handle).st.snap.Load().Read(off)
	return ok && len(b) > 0 && len(v) > 0 && &b[0] == &v[0]
}

// TestConcurrentProducersAndFollowers proves the resend rule under concurrency: a producer
// reconnecting on two connections sends the same bytes from offset 0 in different chunks,
// and the stream holds them exactly once ("a producer can resend after a reconnect without
// duplicating anything"); followers waiting on changed see every byte once, in order.
func TestConcurrentProducersAndFollowers(t *testing.T) {
	const producers, followers = 3, 4
	content := randBytes(4, 256<<10+7)
	s := openStore(t, t.TempDir(), Options{TailSize: 64 << 10, SyncInterval: 5 * time.Millisecond})
	create(t, s, "race")

	var wg sync.WaitGroup
	got := make([][]byte, followers)
	for i := range followers {
		h := open(t, s, "race")
		bufSize := []int{1000, 4096, 32 << 10, 100_000}[i]
		wg.Go(func() {
			buf := make([]byte, bufSize)
			var off int64
			timeout := time.NewTimer(failAfter)
			defer timeout.Stop()
			for {
				b, info, changed, err := h.Read(context.Background(), buf, off)
				if err != nil {
					t.Errorf("follower %d: Read(%d): %v", i, off, err)
					return
				}
				got[i] = append(got[i], b...)
				off += int64(len(b))
				if len(b) > 0 {
					continue
				}
				if info.Closed {
					return
				}
				select {
				case <-changed:
				case <-timeout.C:
					t.Errorf("follower %d: no change within %v at offset %d", i, failAfter, off)
					return
				}
			}
		})
	}

	var pw sync.WaitGroup
	for i := range producers {
		h := open(t, s, "race")
		pw.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 99))
			var off int64
			for off < int64(len(content)) {
				n := min(1+rnd.IntN(9000), len(content)-int(off))
				info, err := h.Append(ctx, off, content[off:off+int64(n)])
				if err != nil {
					t.Errorf("producer %d: Append(%d, %d bytes): %v", i, off, n, err)
					return
				}
				if info.Length < off+int64(n) {
					t.Errorf("producer %d: Append(%d, %d bytes) returned length %d", i, off, n, info.Length)
					return
				}
				off += int64(n)
			}
		})
	}
	pw.Wait()
	closer := open(t, s, "race")
	if info, err := closer.Close(ctx); err != nil || info.Length != int64(len(content)) {
		t.Fatalf("Close = %+v, %v; want length %d", info, err, len(content))
	}
	wg.Wait()

	for i, g := range got {
		if !bytes.Equal(g, content) {
			t.Errorf("follower %d saw %d bytes; want the %d bytes of content exactly", i, len(g), len(content))
		}
	}
	if d := dataFile(t, s, "race"); !bytes.Equal(d, content) {
		t.Errorf("data file holds %d bytes; want the %d bytes of content exactly", len(d), len(content))
	}
}

// TestRelease proves a handle's lifecycle: Release is idempotent (a second call does not
// drop another holder's reference), the last Release frees the shared state, and the
// bytes remain for the next Open.
func TestRelease(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	create(t, s, "h")
	h1 := open(t, s, "h")
	h2 := open(t, s, "h")
	mustAppend(t, h1, 0, []byte("data"))
	if _, _, _, err := h1.Read(context.Background(), make([]byte, 8), 0); err != nil {
		t.Fatal(err)
	}
	h1.Release()
	h1.Release()
	st := h2.(*handle).st
	s.mu.Lock()
	refs := st.refs
	s.mu.Unlock()
	if refs != 1 {
		t.Fatalf("refs after releasing one of two handles twice = %d; want 1", refs)
	}
	// h2 still works: its file was not closed under it.
	mustAppend(t, h2, 4, []byte("more"))
	if got := readAll(t, h2, 0, 3); string(got) != "datamore" {
		t.Fatalf("Read through the remaining handle = %q", got)
	}
	h2.Release()
	h2.Release()
	s.mu.Lock()
	left := len(s.streams)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("store keeps %d streams after every handle was released", left)
	}
	if got := contents(t, s, "h"); string(got) != "datamore" {
		t.Fatalf("bytes after every handle was released and reopened = %q", got)
	}
}

// TestKeysHashed proves "Each stream lives in a directory named after the SHA-256 of its
// key (never after the key itself)": no path under the data directory contains a key or
// any of its segments, and each stream sits at streams/<2 hex>/<64 hex>.
func TestKeysHashed(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	keys := []string{"app/build-7/output.log", "~tilde_key.x-y", "weird..name/._~-/zzz", "single"}
	for _, k := range keys {
		create(t, s, k)
		mustAppend(t, open(t, s, k), 0, []byte(k))
	}
	streamDirs := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, k := range keys {
			for _, seg := range append(strings.Split(k, "/"), k) {
				if strings.Contains(rel, seg) {
					t.Errorf("path %q contains %q of key %q", rel, seg, k)
				}
			}
		}
		if parts := strings.Split(rel, string(filepath.Separator)); d.IsDir() && len(parts) == 3 && parts[0] == "streams" {
			streamDirs++
			if len(parts[1]) != 2 || len(parts[2]) != 64 || !strings.HasPrefix(parts[2], parts[1]) || strings.Trim(parts[2], "0123456789abcdef") != "" {
				t.Errorf("stream directory %q is not streams/<2 hex>/<64 hex>", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if streamDirs != len(keys) {
		t.Fatalf("found %d stream directories; want %d", streamDirs, len(keys))
	}
	for _, k := range keys {
		if got := contents(t, s, k); string(got) != k {
			t.Errorf("stream %q holds %q", k, got)
		}
	}
}

// TestCrashLeftovers proves creation and purging are crash-safe: "its directory appears
// complete with its meta file, or not at all". What a crash leaves in trash/ (a stream
// being created, a stream being purged) is removed at Open and never appears as a stream;
// a stream directory without its meta file is not a stream: not found, not counted, and
// its key can be created afresh.
func TestCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	create(t, s, "keep")
	mustAppend(t, open(t, s, "keep"), 0, []byte("kept"))
	brokenDir := s.streamDir("broken")
	for _, d := range []string{
		filepath.Join(dir, "trash", "new-123"),
		filepath.Join(dir, "trash", "purged-abc"),
		brokenDir,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "data"), []byte("leftover"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "trash", "new-123", "meta.json"), []byte(`{"key":"broken","version":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, Options{MaxOpenStreams: 2})
	if left, err := os.ReadDir(filepath.Join(dir, "trash")); err != nil || len(left) != 0 {
		t.Fatalf("trash after Open: %d entries, %v; want empty", len(left), err)
	}
	if n := s.OpenStreams(); n != 1 {
		t.Fatalf("OpenStreams = %d; want 1 (the directory without meta.json is no stream)", n)
	}
	if _, err := s.Open(ctx, "broken"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open of a directory without meta.json = %v; want ErrNotFound", err)
	}
	_, created, err := s.Create(ctx, "broken", sluice.CreateOptions{})
	if err != nil || !created {
		t.Fatalf("Create over a directory without meta.json = %v, %v; want true, nil", created, err)
	}
	h := open(t, s, "broken")
	if info := h.Info(); info.Length != 0 || info.Closed {
		t.Fatalf("recreated stream Info = %+v; want empty and open", info)
	}
	if got := contents(t, s, "keep"); string(got) != "kept" {
		t.Fatalf("intact stream holds %q after Open", got)
	}
}

// TestClosePurgeRace proves that a Close racing a Purge of the same stream keeps the count
// of open streams right (it is what MaxOpenStreams limits: a leaked count refuses
// creates forever) and leaves nothing of the old stream for a new one of the same key.
// Close either wins (the stream is closed, then purged) or finds the stream purged
// (ErrNotFound); it never fails halfway.
func TestClosePurgeRace(t *testing.T) {
	const n = 64
	s := openStore(t, t.TempDir(), Options{MaxOpenStreams: n})
	raceClosePurge(t, s, "cp/", n, nil)
	if got := s.OpenStreams(); got != 0 {
		t.Fatalf("OpenStreams after closing and purging every stream = %d; want 0", got)
	}
	for i := range n {
		create(t, s, fmt.Sprint("cp/", i)) // all n fit under the limit again
		if info := open(t, s, fmt.Sprint("cp/", i)).Info(); info.Length != 0 || info.Closed {
			t.Fatalf("recreated stream %d: Info = %+v; want empty and open", i, info)
		}
	}
}

// TestClosePurgeRecreate races a Close against a Purge and a Create of the same key
// right after it: the close's marker must never land in the new stream, which stays
// open, and each stream is counted once.
func TestClosePurgeRecreate(t *testing.T) {
	const n = 64
	s := openStore(t, t.TempDir(), Options{})
	raceClosePurge(t, s, "cr/", n, func(key string) {
		if _, _, err := s.Create(ctx, key, sluice.CreateOptions{}); err != nil {
			t.Errorf("Create after Purge: %v", err)
		}
	})
	if got := s.OpenStreams(); got != n {
		t.Fatalf("OpenStreams with %d recreated streams = %d; want %d", n, got, n)
	}
	for i := range n {
		key := fmt.Sprint("cr/", i)
		if info := open(t, s, key).Info(); info.Length != 0 || info.Closed {
			t.Fatalf("recreated stream %d: Info = %+v; want empty and open", i, info)
		}
		if exists(filepath.Join(s.streamDir(key), "closed")) {
			t.Fatalf("recreated stream %d has the old stream's closed marker", i)
		}
	}
}

// raceClosePurge creates n streams named prefix+i, then closes each while it purges it,
// calling then (if not nil) with each key once its purge is done.
func raceClosePurge(t *testing.T, s *Store, prefix string, n int, then func(key string)) {
	handles := make([]sluice.Stream, n)
	for i := range n {
		create(t, s, fmt.Sprint(prefix, i))
		handles[i] = open(t, s, fmt.Sprint(prefix, i))
	}
	var wg sync.WaitGroup
	for i, h := range handles {
		key := fmt.Sprint(prefix, i)
		wg.Go(func() {
			if _, err := h.Close(ctx); err != nil && !errors.Is(err, sluice.ErrNotFound) {
				t.Errorf("Close racing Purge: %v; want nil or ErrNotFound", err)
			}
		})
		wg.Go(func() {
			if err := s.Purge(ctx, key); err != nil {
				t.Errorf("Purge racing Close: %v", err)
			} else if then != nil {
				then(key)
			}
		})
	}
	wg.Wait()
}

// TestWritesDoNotWaitForTheStoreLock proves that an append to an open stream takes no
// store-wide lock: with the store's lock held (as an open, a release or a purge of
// another stream holds it), the append still completes. Before, the first append after
// each sync took the store's lock, which every close held across two fsyncs, so a
// thousand streams closing at once stalled every other stream's writers for a second.
func TestWritesDoNotWaitForTheStoreLock(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{SyncInterval: time.Hour})
	create(t, s, "lock/a")
	h := open(t, s, "lock/a")
	if _, err := h.Append(ctx, 0, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.syncAll(); err != nil { // the next append marks the stream dirty again
		t.Fatal(err)
	}
	s.mu.Lock()
	appended := make(chan error, 1)
	go func() {
		_, err := h.Append(ctx, 4, []byte("two\n"))
		appended <- err
	}()
	select {
	case err := <-appended:
		if err != nil {
			s.mu.Unlock()
			t.Fatal(err)
		}
	case <-time.After(failAfter):
		s.mu.Unlock()
		t.Fatal("Append waited for the store's lock")
	}
	s.mu.Unlock()
	if info := h.Info(); info.Length != 8 {
		t.Fatalf("Length = %d; want 8", info.Length)
	}
}

// TestSyncsWithoutTheStoreLock proves that a create, a mark of an archive and a removal
// of an archived stream's live copy make their writes durable without the store's lock:
// while each one's sync is held (a fake syncfs that waits), another stream is opened,
// appended to and released, and a stream being created is not there yet. Before, they
// held the lock across their fsyncs (a create across four), so a burst of creates held
// every open and release of the store.
func TestSyncsWithoutTheStoreLock(t *testing.T) {
	var version string // of the closed stream "sync/closed"
	for _, tc := range []struct {
		name   string
		rounds int // syncs the operation makes
		op     func(s *Store) error
		check  func(t *testing.T, s *Store)
	}{
		{"create", 2, func(s *Store) error {
			_, _, err := s.Create(ctx, "sync/new", sluice.CreateOptions{Data: []byte("first\n")})
			return err
		}, func(t *testing.T, s *Store) {
			if got := contents(t, s, "sync/new"); string(got) != "first\n" {
				t.Fatalf("created stream holds %q", got)
			}
		}},
		{"mark archived", 2, func(s *Store) error {
			return s.MarkArchived(ctx, "sync/closed", sluice.ArchiveRecord{Version: version, Size: 6})
		}, func(t *testing.T, s *Store) {
			if rec, err := s.Archived(ctx, "sync/closed"); err != nil || rec == nil || rec.Size != 6 {
				t.Fatalf("Archived = %+v, %v; want the record", rec, err)
			}
		}},
		{"remove live", 1, func(s *Store) error {
			return s.RemoveLive(ctx, "sync/closed", version)
		}, func(t *testing.T, s *Store) {
			if _, err := os.Stat(filepath.Join(s.streamDir("sync/closed"), "data")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("live copy after RemoveLive: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := OpenArchive(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s := openStore(t, t.TempDir(), Options{SyncInterval: time.Hour, Archive: a})
			create(t, s, "sync/old")
			info, _, err := s.Create(ctx, "sync/closed", sluice.CreateOptions{Data: []byte("bytes\n"), Closed: true})
			if err != nil {
				t.Fatal(err)
			}
			version = info.Version
			if tc.name == "remove live" {
				if err := s.MarkArchived(ctx, "sync/closed", sluice.ArchiveRecord{Version: version, Size: 6}); err != nil {
					t.Fatal(err)
				}
			}
			whileSyncHeld(t, s, tc.rounds, func() error { return tc.op(s) })
			tc.check(t, s)
		})
	}
}

// whileSyncHeld runs op with s's syncs held, one round of rounds at a time, and checks
// that another stream is opened, appended to and released meanwhile.
func whileSyncHeld(t *testing.T, s *Store, rounds int, op func() error) {
	t.Helper()
	f := newFakeSyncfs()
	s.syncer.whole, s.syncer.fs = true, f.syncfs
	t.Cleanup(func() { s.syncer.fs = syncfs }) // after a failure, for the store's Close
	opDone := make(chan error, 1)
	go func() { opDone <- op() }()
	select {
	case <-f.entered:
	case err := <-opDone:
		t.Fatalf("returned (%v) without syncing through the store's syncer", err)
	}
	done := make(chan error, 1)
	go func() {
		// Opened and released twice: the last release would fsync what was appended.
		h, err := s.Open(ctx, "sync/old")
		if err == nil {
			t.Cleanup(h.Release)
			_, err = h.Append(ctx, h.Info().Length, []byte("meanwhile\n"))
		}
		if h2, oerr := s.Open(ctx, "sync/old"); oerr == nil {
			h2.Release()
		}
		if _, oerr := s.Open(ctx, "sync/new"); !errors.Is(oerr, sluice.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("open of a key being created: %v, want ErrNotFound", oerr))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(failAfter):
		t.Error("another stream's open, append and release waited for the sync")
	}
	f.release <- nil
	for range rounds - 1 {
		<-f.entered
		f.release <- nil
	}
	if err := <-opDone; err != nil {
		t.Fatal(err)
	}
	s.syncer.fs = syncfs // for the releases to come
}

// TestConcurrentCreates proves that creates of one key at once make one stream: one
// reports it created, the others find it, with the same version.
func TestConcurrentCreates(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{MaxOpenStreams: 1})
	const n = 16
	type result struct {
		info    sluice.Info
		created bool
		err     error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			info, created, err := s.Create(ctx, "same", sluice.CreateOptions{})
			results <- result{info, created, err}
		}()
	}
	var versions []string
	made := 0
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("Create: %v", r.err)
		}
		if r.created {
			made++
		}
		versions = append(versions, r.info.Version)
	}
	if made != 1 {
		t.Fatalf("%d of %d creates of one key made it; want 1", made, n)
	}
	for _, v := range versions {
		if v != versions[0] {
			t.Fatalf("versions %q; want one", versions)
		}
	}
	if got := s.OpenStreams(); got != 1 {
		t.Fatalf("OpenStreams = %d; want 1", got)
	}
}

// TestHandleConcurrentUse proves "A handle is safe for concurrent use": goroutines
// appending, reading and asking for Info through one handle all see the right bytes
// (with -race, without a data race), and once it is released the stream keeps no tail
// for it.
func TestHandleConcurrentUse(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{SyncInterval: time.Hour})
	create(t, s, "shared")
	other := open(t, s, "shared") // keeps the stream loaded after h is released
	h := open(t, s, "shared")
	content := randBytes(5, 64<<10)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			<-start
			// Read first, so that the handle's first reads run at once.
			if _, _, _, err := h.Read(context.Background(), make([]byte, 8), 0); err != nil {
				t.Errorf("first Read: %v", err)
				return
			}
			for off := 0; off < len(content); off += 1000 {
				end := min(off+1000+g, len(content))
				if _, err := h.Append(ctx, int64(off), content[off:end]); err != nil {
					t.Errorf("Append(%d): %v", off, err)
					return
				}
				buf := make([]byte, 512)
				b, info, _, err := h.Read(context.Background(), buf, int64(off/2))
				if err != nil || !bytes.Equal(b, content[off/2:off/2+len(b)]) || info.Length < int64(end) || h.Info().Length < int64(end) {
					t.Errorf("Read(%d) = %d bytes, %+v, %v", off/2, len(b), info, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := readAll(t, h, 0, 4096); !bytes.Equal(got, content) {
		t.Fatalf("stream holds %d bytes; want the %d appended", len(got), len(content))
	}
	h.Release()
	st := other.(*handle).st
	st.mu.Lock()
	readers, blocks := st.readers, st.snap.Load().Tail.Blocks()
	st.mu.Unlock()
	if readers != 0 || blocks != 0 {
		t.Fatalf("after the only reading handle was released: %d readers, %d tail blocks; want 0, 0", readers, blocks)
	}
}

// TestWritersJournalUndo proves the journal's crash rule (writers.go): a producer write
// whose journal line made it but whose bytes did not, or only in part, is undone when
// the store opens again, bytes and state, so that the producer's retry is stored once;
// and a line cut short by the crash is ignored.
func TestWritersJournalUndo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	create(t, s, "j")
	h := open(t, s, "j")
	p := func(seq uint64) *sluice.Producer { return &sluice.Producer{ID: "p", Seq: seq} }
	if _, err := h.Write(ctx, sluice.Write{Data: []byte("abc"), Producer: p(0)}); err != nil {
		t.Fatal(err)
	}
	h.Release()
	s.Close()
	// The crash: the line of the producer's next write, then 2 of its 7 bytes, then half
	// of another line.
	sdir := s.streamDir("j")
	jf, err := os.OpenFile(filepath.Join(sdir, "writers"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(jf, `{"start":3,"end":10,"writers":{"producers":{"p":{"epoch":0,"seq":1}}}}`+"\n"+`{"start":10,"e`)
	jf.Close()
	df, _ := os.OpenFile(filepath.Join(sdir, "data"), os.O_APPEND|os.O_WRONLY, 0)
	df.WriteString("de")
	df.Close()

	s2 := openStore(t, dir, Options{})
	h2 := open(t, s2, "j")
	if info := h2.Info(); info.Length != 3 {
		t.Fatalf("after the crash: length %d, want 3 (the cut write undone)", info.Length)
	}
	wr, err := h2.Write(ctx, sluice.Write{Data: []byte("defghij"), Producer: p(1)})
	if err != nil || wr.Duplicate || wr.Length != 10 {
		t.Fatalf("the producer's retry = %+v, %v; want it stored once, length 10", wr, err)
	}
	if wr, err := h2.Write(ctx, sluice.Write{Data: []byte("defghij"), Producer: p(1)}); err != nil || !wr.Duplicate {
		t.Fatalf("its retry again = %+v, %v; want a duplicate", wr, err)
	}
	if got := dataFile(t, s2, "j"); string(got) != "abcdefghij" {
		t.Fatalf("data %q", got)
	}
}

// TestDiskBytes proves DiskBytes follows the live copies' bytes: counted at open,
// grown by appends and first bytes, given back by purges.
func TestDiskBytes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	s.Create(ctx, "a", sluice.CreateOptions{Data: []byte("12345")})
	create(t, s, "b")
	mustAppend(t, open(t, s, "b"), 0, []byte("678"))
	if n := s.DiskBytes(); n != 8 {
		t.Fatalf("DiskBytes = %d, want 8", n)
	}
	if err := s.Purge(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n := s.DiskBytes(); n != 3 {
		t.Fatalf("DiskBytes after a purge = %d, want 3", n)
	}
	if n := openStore(t, dir, Options{}).DiskBytes(); n != 3 {
		t.Fatalf("DiskBytes of the store opened again = %d, want 3", n)
	}
}

// TestIdleClose proves "open streams nobody writes to for --idle-close are closed (and
// so archived)": a stream left alone is closed at a sweep, and the Archiver is told of
// it; one written to all along stays open.
func TestIdleClose(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{IdleClose: 300 * time.Millisecond, SweepInterval: 50 * time.Millisecond})
	_, cursor, _ := s.ClosedSince(0)
	create(t, s, "quiet")
	create(t, s, "busy")
	busy := open(t, s, "busy")
	deadline := time.Now().Add(10 * time.Second)
	for off := int64(0); ; off++ {
		mustAppend(t, busy, off, []byte("x"))
		if open(t, s, "quiet").Info().Closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream nobody wrote to is still open")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if busy.Info().Closed {
		t.Fatal("the stream written to all along was closed")
	}
	if keys, _, _ := s.ClosedSince(cursor); !slices.Contains(keys, "quiet") {
		t.Fatalf("the Archiver was not told of the idle close: %q", keys)
	}
}
