package file

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"time"
)

// A syncer makes what the store wrote durable. Where the store's directory is one
// filesystem on Linux, a single syncfs(2) makes every file of it durable at once, so
// the callers that wait at the same time share one: a thousand streams closing
// together cost a few commits of the filesystem's journal instead of four thousand
// fsyncs. It matters beyond the disk: a goroutine in a syscall keeps the Go runtime's
// processor until the runtime's monitor hands it on, which can take 10 ms when the
// server is busy with short syscalls, so on one core each fsync held every other
// stream's deliveries for as long as it took (0.3 ms here), and those closes held the
// last lines of other streams for a second. Elsewhere each caller fsyncs its own files.
type syncer struct {
	dir   string
	whole bool                   // syncfs covers the store: Linux, and one filesystem under dir
	fs    func(dir string) error // syncfs; a test's fake
	took  func(time.Duration)

	mu       sync.Mutex
	cond     sync.Cond
	running  bool   // a round has started: it takes new calls until its syscall
	called   bool   // the running round is in its syscall
	waiters  int    // calls waiting for a round to finish
	started  uint64 // rounds started
	finished uint64 // rounds finished
	failed   uint64 // the latest round that failed, with err
	err      error
}

func newSyncer(dir string, took func(time.Duration)) *syncer {
	y := &syncer{dir: dir, whole: syncsWhole(dir), fs: syncfs, took: took}
	y.cond.L = &y.mu
	return y
}

// sync makes the writes made to files so far durable (files may hold nil). With syncfs
// it waits for a round that calls syncfs after this call, running it if none is
// running. A round yields the processor before its syscall, so that on one core the
// other writers that are ready to run reach sync and share it.
func (y *syncer) sync(files ...*os.File) error {
	if !y.whole {
		return y.fsync(files)
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	round := y.started + 1
	if y.running && !y.called {
		round = y.started // its syscall is yet to come: it covers this call's writes
	}
	for y.finished < round {
		if y.running {
			y.waiters++
			y.cond.Wait()
			y.waiters--
			continue
		}
		y.run()
	}
	// A later round's failure may hide this one's (the kernel reports a write-back
	// error once), so it fails this call too: a caller that retries loses nothing.
	if y.failed >= round {
		return y.err
	}
	return nil
}

// run runs the next round; the caller holds y.mu, which run lets go meanwhile.
func (y *syncer) run() {
	y.running, y.called, y.started = true, false, y.started+1
	n := y.started
	y.mu.Unlock()
	runtime.Gosched()
	y.mu.Lock()
	y.called = true
	y.mu.Unlock()
	start := time.Now()
	err := y.fs(y.dir)
	y.took(time.Since(start))
	y.mu.Lock()
	y.running, y.finished = false, n
	if err != nil {
		y.failed, y.err = n, err
	}
	y.cond.Broadcast()
}

// fsync fsyncs each file. A file closed meanwhile is skipped: only a stream's journal
// is closed while the stream is open, after its rewrite was made durable in its place.
func (y *syncer) fsync(files []*os.File) error {
	var errs []error
	for _, f := range files {
		if f == nil {
			continue
		}
		start := time.Now()
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
		y.took(time.Since(start))
	}
	return errors.Join(errs...)
}
