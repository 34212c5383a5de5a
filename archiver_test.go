package sluice_test

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/mock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore is a mock store of closed streams held in memory, with the archive calls
// recorded, for the Archiver's fault-injection tests.
type fakeStore struct {
	mock.Store
	mu       sync.Mutex
	data     map[string][]byte
	records  map[string]sluice.ArchiveRecord
	removed  map[string]bool
	closes   []string
	notify   chan struct{}
	keep     int // ClosedSince forgets all but the last keep closes; 0 keeps all
	listings int
}

func newFakeStore(streams map[string]string) *fakeStore {
	s := &fakeStore{data: map[string][]byte{}, records: map[string]sluice.ArchiveRecord{}, removed: map[string]bool{}, notify: make(chan struct{})}
	for k, v := range streams {
		s.data[k] = []byte(v)
	}
	s.OpenFn = func(ctx context.Context, key string) (sluice.Stream, error) {
		s.mu.Lock()
		b, ok := s.data[key]
		s.mu.Unlock()
		if !ok {
			return nil, sluice.ErrNotFound
		}
		return streamOf(b), nil
	}
	s.NotifyFn = func() <-chan struct{} { s.mu.Lock(); defer s.mu.Unlock(); return s.notify }
	s.ClosedSinceFn = func(cursor uint64) ([]string, uint64, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		end := uint64(len(s.closes))
		if first := end - uint64(min(s.keep, len(s.closes))); s.keep > 0 && cursor < first {
			return append([]string(nil), s.closes[first:]...), end, false
		}
		return append([]string(nil), s.closes[cursor:]...), end, true
	}
	s.LiveClosedFn = func(ctx context.Context) ([]sluice.LiveClosed, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.listings++
		var out []sluice.LiveClosed
		for k := range s.data {
			if s.removed[k] {
				continue
			}
			lc := sluice.LiveClosed{Key: k, Version: "v1"}
			if rec, ok := s.records[k]; ok {
				lc.Archived = &rec
			}
			out = append(out, lc)
		}
		return out, nil
	}
	s.ArchivedFn = func(ctx context.Context, key string) (*sluice.ArchiveRecord, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if rec, ok := s.records[key]; ok {
			return &rec, nil
		}
		return nil, nil
	}
	s.MarkArchivedFn = func(ctx context.Context, key string, rec sluice.ArchiveRecord) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.data[key]; !ok {
			return sluice.ErrNotFound
		}
		s.records[key] = rec
		return nil
	}
	s.RemoveLiveFn = func(ctx context.Context, key, version string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.removed[key] = true
		return nil
	}
	return s
}

// close records that a stream closed, as a store does, and wakes the Archiver.
func (s *fakeStore) close(key, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = []byte(data)
	s.closes = append(s.closes, key)
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *fakeStore) record(key string) (sluice.ArchiveRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[key]
	return rec, ok
}

// streamOf is a closed stream of b, read in pieces of at most 7 bytes.
func streamOf(b []byte) *mock.Stream {
	info := sluice.Info{Length: int64(len(b)), Closed: true, Version: "v1"}
	return &mock.Stream{
		InfoFn: func() sluice.Info { return info },
		ReadFn: func(ctx context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
			n := copy(p[:min(len(p), 7)], b[off:])
			return p[:n], info, nil, nil
		},
		ReleaseFn: func() {},
	}
}

// memArchive is a mock archive in memory; corrupt, while positive, makes that many
// reads back return other bytes.
type memArchive struct {
	mock.Archive
	mu      sync.Mutex
	objects map[string][]byte
	corrupt int
	puts    int
}

func newMemArchive() *memArchive {
	a := &memArchive{objects: map[string][]byte{}}
	a.PutFn = func(ctx context.Context, key string, r io.Reader, size int64) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.puts++
		a.objects[key] = b
		return nil
	}
	a.StatFn = func(ctx context.Context, key string) (int64, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		b, ok := a.objects[key]
		if !ok {
			return 0, sluice.ErrNotFound
		}
		return int64(len(b)), nil
	}
	a.OpenFn = func(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		b := bytes.Clone(a.objects[key][off:])
		if a.corrupt > 0 && len(b) > 0 {
			a.corrupt--
			b[0] ^= 1
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	a.DeleteFn = func(ctx context.Context, key string) error {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.objects, key)
		return nil
	}
	return a
}

func (a *memArchive) object(key string) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.objects[key]
	return b, ok
}

// countingMetrics counts what an Archiver reports.
type countingMetrics struct {
	mu                         sync.Mutex
	started, failed, succeeded int
	bytes                      int64
}

func (m *countingMetrics) Started()   { m.mu.Lock(); m.started++; m.mu.Unlock() }
func (m *countingMetrics) Failed()    { m.mu.Lock(); m.failed++; m.mu.Unlock() }
func (m *countingMetrics) Queued(int) {}
func (m *countingMetrics) Succeeded(n int64, _ time.Duration) {
	m.mu.Lock()
	m.succeeded++
	m.bytes += n
	m.mu.Unlock()
}

// run starts an Archiver over store and archive until the test ends.
func run(t *testing.T, store sluice.ArchivableStore, archive sluice.Archive, opts sluice.ArchiverOptions) {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 10*time.Millisecond
	a := sluice.NewArchiver(store, archive, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if fs, ok := store.(*fakeStore); ok { // it has listed the store, and waits for closes
		waitFor(t, "the Archiver's start", func() bool { fs.mu.Lock(); defer fs.mu.Unlock(); return fs.listings > 0 })
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TestArchiverPullsCloses proves the Archiver learns of closes by pulling them from the
// store: what was closed before it started (found by listing the store) and what closes
// while it runs (Notify, then ClosedSince) are archived as their exact bytes, recorded
// with their size and CRC32C, and their live copies removed (retention 0).
func TestArchiverPullsCloses(t *testing.T) {
	store := newFakeStore(map[string]string{"before": "closed before the archiver started\n"})
	archive := newMemArchive()
	m := &countingMetrics{}
	run(t, store, archive, sluice.ArchiverOptions{Metrics: m})
	store.close("after", "closed while it ran\n")
	for key, want := range map[string]string{"before": "closed before the archiver started\n", "after": "closed while it ran\n"} {
		waitFor(t, "the archive of "+key, func() bool { _, ok := store.record(key); return ok })
		rec, _ := store.record(key)
		if got, _ := archive.object(key); string(got) != want {
			t.Errorf("object of %s = %q, want %q", key, got, want)
		}
		if rec.Size != int64(len(want)) || rec.CRC32C != crc32.Checksum([]byte(want), castagnoli) || rec.Version != "v1" {
			t.Errorf("record of %s = %+v", key, rec)
		}
		waitFor(t, "the live copy of "+key+" to go", func() bool { store.mu.Lock(); defer store.mu.Unlock(); return store.removed[key] })
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started != 2 || m.succeeded != 2 || m.failed != 0 || m.bytes != int64(len("closed before the archiver started\n")+len("closed while it ran\n")) {
		t.Errorf("metrics %+v", m)
	}
}

// TestArchiverListsWhenBehind proves that an Archiver told by ClosedSince that some
// closes were forgotten lists the store whole, and so archives them all.
func TestArchiverListsWhenBehind(t *testing.T) {
	store := newFakeStore(nil)
	store.keep = 1
	run(t, store, newMemArchive(), sluice.ArchiverOptions{Retention: time.Hour})
	store.mu.Lock()
	store.data["a"], store.data["b"] = []byte("a"), []byte("b")
	store.closes = append(store.closes, "a", "b")
	store.mu.Unlock()
	store.close("c", "c") // the store remembers only this one
	for _, k := range []string{"a", "b", "c"} {
		waitFor(t, "the archive of "+k, func() bool { _, ok := store.record(k); return ok })
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.listings < 2 {
		t.Errorf("store listed %d times, want at start and once behind", store.listings)
	}
}

// TestArchiverVerifies proves "Nothing is removed from the store before its archive is
// confirmed": an object that reads back different from the stream is not recorded, and
// the upload is retried until one reads back right.
func TestArchiverVerifies(t *testing.T) {
	store := newFakeStore(map[string]string{"k": "the bytes that must arrive intact\n"})
	archive := newMemArchive()
	archive.corrupt = 2
	m := &countingMetrics{}
	run(t, store, archive, sluice.ArchiverOptions{Metrics: m})
	waitFor(t, "the archive", func() bool { _, ok := store.record("k"); return ok })
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed != 2 || m.started != 3 || archive.puts != 3 {
		t.Errorf("failed %d, started %d, puts %d; want 2, 3, 3", m.failed, m.started, archive.puts)
	}
}

// TestArchiverPurgedDuringUpload proves that a stream purged while it uploads leaves no
// object behind: the record is refused, and the object deleted.
func TestArchiverPurgedDuringUpload(t *testing.T) {
	store := newFakeStore(map[string]string{"gone": "purged mid-upload\n"})
	archive := newMemArchive()
	put := archive.PutFn
	archive.PutFn = func(ctx context.Context, key string, r io.Reader, size int64) error {
		err := put(ctx, key, r, size)
		store.mu.Lock()
		delete(store.data, key) // the purge
		store.mu.Unlock()
		return err
	}
	run(t, store, archive, sluice.ArchiverOptions{})
	waitFor(t, "the upload", func() bool { archive.mu.Lock(); defer archive.mu.Unlock(); return archive.puts == 1 })
	waitFor(t, "the object to go", func() bool { _, ok := archive.object("gone"); return !ok })
}

// TestArchiverLeases proves the lease policy: a stream whose lease another instance
// holds is left to it; one whose lease this instance gets is archived, then its lease
// given back.
func TestArchiverLeases(t *testing.T) {
	store := newFakeStore(map[string]string{"theirs": "x", "ours": "y"})
	archive := newMemArchive()
	var mu sync.Mutex
	unleased := map[string]bool{}
	leaser := &mock.Leaser{
		LeaseFn: func(ctx context.Context, key string, ttl time.Duration) (bool, error) {
			if ttl != 7*time.Minute {
				t.Errorf("lease of %v, want the configured 7m", ttl)
			}
			return key == "ours", nil
		},
		UnleaseFn: func(ctx context.Context, key string) error {
			mu.Lock()
			defer mu.Unlock()
			unleased[key] = true
			return nil
		},
	}
	run(t, store, archive, sluice.ArchiverOptions{Leaser: leaser, LeaseTTL: 7 * time.Minute})
	waitFor(t, "the lease to be given back", func() bool { mu.Lock(); defer mu.Unlock(); return unleased["ours"] })
	if _, ok := store.record("ours"); !ok {
		t.Error("the stream whose lease this instance got is not archived")
	}
	if _, ok := archive.object("theirs"); ok {
		t.Error("the stream whose lease another instance holds was uploaded")
	}
}

// TestArchiverRescan proves that an Archiver with Rescan lists the store again, as an
// instance must to take over the streams of one that died.
func TestArchiverRescan(t *testing.T) {
	store := newFakeStore(nil)
	run(t, store, newMemArchive(), sluice.ArchiverOptions{Rescan: 5 * time.Millisecond})
	store.mu.Lock()
	store.data["orphan"] = []byte("closed elsewhere\n") // no close through this store
	store.mu.Unlock()
	waitFor(t, "the orphan's archive", func() bool { _, ok := store.record("orphan"); return ok })
}

// TestArchiverStopsOnPurge proves a stream purged before its upload is skipped, not
// retried for ever.
func TestArchiverStopsOnPurge(t *testing.T) {
	store := newFakeStore(nil)
	opened := make(chan struct{}, 10)
	open := store.OpenFn
	store.OpenFn = func(ctx context.Context, key string) (sluice.Stream, error) {
		opened <- struct{}{}
		return open(ctx, key)
	}
	run(t, store, newMemArchive(), sluice.ArchiverOptions{})
	store.close("k", "x")
	store.mu.Lock()
	delete(store.data, "k")
	store.mu.Unlock()
	<-opened
	time.Sleep(50 * time.Millisecond) // many backoffs of 1-10 ms
	if n := len(opened); n > 0 {
		t.Fatalf("a purged stream was opened %d more times", n)
	}
}

// TestArchiverOneUploadAtATime proves a stream told of again while a worker uploads it
// (a rescan, a second close notice) is not uploaded by another worker meanwhile.
func TestArchiverOneUploadAtATime(t *testing.T) {
	store := newFakeStore(nil)
	archive := newMemArchive()
	started, release := make(chan struct{}), make(chan struct{})
	put := archive.PutFn
	archive.PutFn = func(ctx context.Context, key string, r io.Reader, size int64) error {
		started <- struct{}{}
		<-release
		return put(ctx, key, r, size)
	}
	run(t, store, archive, sluice.ArchiverOptions{Rescan: time.Millisecond, Workers: 4})
	store.close("k", "slow upload\n")
	<-started
	store.close("k", "slow upload\n") // told again, twice over
	time.Sleep(20 * time.Millisecond) // many rescans
	close(release)
	waitFor(t, "the archive", func() bool { _, ok := store.record("k"); return ok })
	select {
	case <-started:
		t.Fatal("a second upload of the stream began while the first ran")
	case <-time.After(50 * time.Millisecond):
	}
}
