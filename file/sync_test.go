package file

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeSyncfs is a syncfs whose rounds wait to be let go, one at a time.
type fakeSyncfs struct {
	entered chan int   // the round number, as it enters its syscall
	release chan error // what the round returns
	mu      sync.Mutex
	rounds  int
}

func newFakeSyncfs() *fakeSyncfs {
	return &fakeSyncfs{entered: make(chan int), release: make(chan error)}
}

func (f *fakeSyncfs) syncfs(string) error {
	f.mu.Lock()
	f.rounds++
	n := f.rounds
	f.mu.Unlock()
	f.entered <- n
	return <-f.release
}

func fakeSyncer(t *testing.T, f *fakeSyncfs) *syncer {
	y := newSyncer(t.TempDir(), func(time.Duration) {})
	y.whole, y.fs = true, f.syncfs
	return y
}

// TestSyncerWaitsForARoundAfterItsCall proves what makes syncfs safe to share: a call
// made while a round is in its syscall (which may have missed the call's writes) waits
// for the next round, and calls made meanwhile share that one.
func TestSyncerWaitsForARoundAfterItsCall(t *testing.T) {
	f := newFakeSyncfs()
	y := fakeSyncer(t, f)
	first := make(chan error, 1)
	go func() { first <- y.sync() }()
	if n := <-f.entered; n != 1 {
		t.Fatalf("first round = %d", n)
	}
	const late = 8
	done := make(chan error, late)
	for range late {
		go func() { done <- y.sync() }()
	}
	waitFor(t, "the late calls to wait", func() bool { return waiting(y) == late })
	f.release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-f.entered; n != 2 {
		t.Fatalf("second round = %d; want 2", n)
	}
	select {
	case err := <-done:
		t.Fatalf("a call made during round 1 returned (%v) before round 2 finished", err)
	default:
	}
	f.release <- nil
	for range late {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if f.rounds != 2 {
		t.Fatalf("%d rounds for %d calls; want 2", f.rounds, late+1)
	}
}

// TestSyncerFailure proves that a failed round fails its callers, and that the next
// round's success is reported again.
func TestSyncerFailure(t *testing.T) {
	f := newFakeSyncfs()
	y := fakeSyncer(t, f)
	boom := errors.New("boom")
	errc := make(chan error, 1)
	go func() { errc <- y.sync() }()
	<-f.entered
	f.release <- boom
	if err := <-errc; !errors.Is(err, boom) {
		t.Fatalf("sync = %v; want %v", err, boom)
	}
	go func() { errc <- y.sync() }()
	<-f.entered
	f.release <- nil
	if err := <-errc; err != nil {
		t.Fatalf("sync after a failed round = %v; want nil", err)
	}
}

// TestSyncerWhole proves that a store's directory on Linux is synced with syncfs, so
// the tests of the store run that path, and that the real syscall works here.
func TestSyncerWhole(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"streams", "trash"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rounds := 0
	y := newSyncer(dir, func(time.Duration) { rounds++ })
	if want := runtime.GOOS == "linux"; y.whole != want {
		t.Fatalf("whole = %v on %s; want %v", y.whole, runtime.GOOS, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "streams", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := y.sync(); err != nil {
		t.Fatal(err)
	}
	if rounds != 1 {
		t.Fatalf("%d rounds timed; want 1", rounds)
	}
}

// TestSyncerFiles proves the fallback where syncfs does not cover the store: each file
// is fsynced, and a journal closed meanwhile (rewritten elsewhere) is no error.
func TestSyncerFiles(t *testing.T) {
	dir := t.TempDir()
	y := newSyncer(dir, func(time.Duration) {})
	y.whole = false
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	closed, err := os.Create(filepath.Join(dir, "writers"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if err := y.sync(f, nil, closed); err != nil {
		t.Fatalf("sync = %v; want nil", err)
	}
}

// waiting counts the calls that wait for a round to finish.
func waiting(y *syncer) int {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.waiters
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
