package sluice

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// ArchiverOptions tune an Archiver. Zero values mean the defaults named on each field.
type ArchiverOptions struct {
	// Retention is how long the live copy of a stream stays after its archive is
	// confirmed; 0 removes it at once.
	Retention time.Duration
	// Workers is how many streams are uploaded at once (2).
	Workers int
	// MinBackoff and MaxBackoff bound the delay between attempts to archive a stream
	// (1s and 5m): it doubles from the first to the second, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Leaser decides whether this Archiver archives a stream, when several instances
	// share the store; nil means it archives every stream it is told of.
	Leaser Leaser
	// LeaseTTL is how long a lease lasts (10m): an instance that dies mid-upload holds
	// its streams that long, then another takes them over at its next Rescan.
	LeaseTTL time.Duration
	// Rescan is how often the store is listed whole (LiveClosed) for streams closed
	// elsewhere whose archiver died; 0 means only at start-up.
	Rescan time.Duration
	// Logger receives the archive's logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives what the Archiver counts; nil means nothing is counted.
	Metrics ArchiverMetrics
}

// ArchiverMetrics is told of each attempt to archive a stream (package metrics
// implements it for Prometheus).
type ArchiverMetrics interface {
	// Started is called as an upload begins, Failed when an attempt fails (it is
	// retried), Succeeded when a stream of size bytes is archived and verified.
	Started()
	Failed()
	Succeeded(size int64, took time.Duration)
	// Queued reports how many streams wait to be archived.
	Queued(n int)
}

// Archiver moves closed streams from a store to an archive: it uploads each stream as a
// stream (read from the store while the archive writes it, never whole in memory),
// checks the object's size and CRC32C against the bytes it read, records the archive in
// the store, and removes the live copy Retention later. Failed attempts are retried,
// re-reading the store, with exponential backoff and jitter, for as long as it runs.
// Nothing is removed from the store before its archive is confirmed.
//
// It learns of closed streams by pulling them from the store (Notify, ClosedSince),
// and by listing the store at start-up and every Rescan.
type Archiver struct {
	store   ArchivableStore
	archive Archive
	opts    ArchiverOptions
	log     *slog.Logger
	m       ArchiverMetrics

	mu      sync.Mutex
	queue   []string        // keys to archive, in order
	queued  map[string]bool // keys in queue
	working map[string]bool // keys a worker archives now: not queued again meanwhile
	drops   map[string]drop // archived streams whose live copy is to go
	wake    chan struct{}   // a key was queued
}

type drop struct {
	version string
	due     time.Time
}

// NewArchiver returns an Archiver of store's streams into archive. Call Run to start it.
func NewArchiver(store ArchivableStore, archive Archive, opts ArchiverOptions) *Archiver {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	return &Archiver{
		store:   store,
		archive: archive,
		opts:    opts,
		log:     opts.Logger,
		m:       opts.Metrics,
		queued:  make(map[string]bool),
		working: make(map[string]bool),
		drops:   make(map[string]drop),
		wake:    make(chan struct{}, 1),
	}
}

// enqueue asks for the stream of key to be archived. Keys queued twice, or while a
// worker archives them, are archived once.
func (a *Archiver) enqueue(key string) {
	a.mu.Lock()
	if !a.queued[key] && !a.working[key] {
		a.queued[key] = true
		a.queue = append(a.queue, key)
	}
	n := len(a.queue)
	a.mu.Unlock()
	a.m.Queued(n)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run archives streams until ctx is done. It first finishes what an earlier run left:
// closed streams not archived are queued, and archived ones get their live copy removed
// when due. An upload cut by ctx is abandoned, and its stream is archived by the next run.
func (a *Archiver) Run(ctx context.Context) error {
	notify := a.store.Notify()
	_, cursor, _ := a.store.ClosedSince(0) // what closed before now, the scan finds
	n, err := a.scan(ctx)
	if err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	if n > 0 {
		a.log.Info("archiver resuming", "streams", n)
	}
	var wg sync.WaitGroup
	for range a.opts.Workers {
		wg.Go(func() { a.work(ctx) })
	}
	a.dropDue(ctx)
	a.watch(ctx, notify, cursor)
	wg.Wait()
	return nil
}

// scan lists the store's closed streams with a live copy: those not archived are
// queued, the others' live copies are scheduled to go. It returns how many it found.
func (a *Archiver) scan(ctx context.Context) (int, error) {
	live, err := a.store.LiveClosed(ctx)
	if err != nil {
		return 0, err
	}
	for _, lc := range live {
		if lc.Archived == nil {
			a.enqueue(lc.Key)
		} else {
			a.scheduleDrop(lc.Key, lc.Version, lc.Archived.At)
		}
	}
	return len(live), nil
}

// watch queues the streams that close, as the store tells of them, lists the store
// every Rescan, and removes live copies as they fall due, until ctx is done.
func (a *Archiver) watch(ctx context.Context, notify <-chan struct{}, cursor uint64) {
	drops := time.NewTicker(min(max(a.opts.Retention/4, time.Second), time.Minute))
	defer drops.Stop()
	var rescans <-chan time.Time
	if a.opts.Rescan > 0 {
		t := time.NewTicker(a.opts.Rescan)
		defer t.Stop()
		rescans = t.C
	}
	for {
		rescan := false
		select {
		case <-notify:
		case <-rescans:
			rescan = true
		case <-drops.C:
			a.dropDue(ctx)
			continue
		case <-ctx.Done():
			return
		}
		notify = a.store.Notify() // before ClosedSince, so that no close goes unseen
		keys, next, complete := a.store.ClosedSince(cursor)
		cursor = next
		for _, k := range keys {
			a.enqueue(k)
		}
		if rescan || !complete {
			if _, err := a.scan(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("archiver: list closed streams", "err", err)
			}
		}
	}
}

func (a *Archiver) next(ctx context.Context) (string, bool) {
	for {
		a.mu.Lock()
		if len(a.queue) > 0 {
			key := a.queue[0]
			a.queue = a.queue[1:]
			delete(a.queued, key)
			a.working[key] = true
			n := len(a.queue)
			a.mu.Unlock()
			a.m.Queued(n)
			if n > 0 {
				select {
				case a.wake <- struct{}{}: // for the next worker
				default:
				}
			}
			return key, true
		}
		a.mu.Unlock()
		select {
		case <-a.wake:
		case <-ctx.Done():
			return "", false
		}
	}
}

func (a *Archiver) work(ctx context.Context) {
	for {
		key, ok := a.next(ctx)
		if !ok {
			return
		}
		a.archiveKey(ctx, key)
		a.mu.Lock()
		delete(a.working, key)
		a.mu.Unlock()
	}
}

// archiveKey archives the stream of key, retrying until it is done, purged, or ctx ends.
func (a *Archiver) archiveKey(ctx context.Context, key string) {
	for attempt := 0; ; attempt++ {
		err := a.archiveOnce(ctx, key)
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrNotFound) {
			a.log.Info("archive skipped: stream purged", "key", key)
			return
		}
		wait := a.backoff(attempt)
		a.log.Warn("archive failed, retrying", "key", key, "attempt", attempt+1, "retry_in", wait, "err", err)
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// backoff is the delay after the given failed attempt (from 0).
func (a *Archiver) backoff(attempt int) time.Duration {
	return backoff.Delay(a.opts.MinBackoff, a.opts.MaxBackoff, attempt)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// archiveOnce makes one attempt at archiving the stream of key: upload, verify, record.
func (a *Archiver) archiveOnce(ctx context.Context, key string) error {
	if a.opts.Leaser != nil {
		ours, err := a.opts.Leaser.Lease(ctx, key, a.opts.LeaseTTL)
		if err != nil {
			return fmt.Errorf("lease %s: %w", key, err)
		}
		if !ours {
			return nil // another instance archives it
		}
	}
	st, err := a.store.Open(ctx, key)
	if err != nil {
		return err
	}
	defer st.Release()
	info := st.Info()
	if !info.Closed {
		return nil // archived when it closes
	}
	if rec, err := a.store.Archived(ctx, key); err != nil {
		return err
	} else if rec != nil && rec.Version == info.Version {
		return nil // queued twice
	}
	// Each attempt has a deadline that allows for a slow link (1 MiB/s), so that a hung
	// connection never stalls a worker forever.
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(info.Length>>20)*time.Second)
	defer cancel()
	start := time.Now()
	a.m.Started()
	sum, err := a.upload(actx, key, st, info.Length)
	if err != nil {
		a.m.Failed()
		return fmt.Errorf("upload %s: %w", key, err)
	}
	rec := ArchiveRecord{Version: info.Version, Size: info.Length, CRC32C: sum, At: time.Now()}
	if err := a.store.MarkArchived(ctx, key, rec); err != nil {
		a.m.Failed()
		if errors.Is(err, ErrNotFound) {
			// Purged (or purged and created again) while uploading: the object holds
			// bytes of no stream now.
			if err := a.archive.Delete(actx, key); err != nil {
				a.log.Warn("archive: delete object of purged stream", "key", key, "err", err)
			}
		}
		return fmt.Errorf("record archive of %s: %w", key, err)
	}
	d := time.Since(start)
	a.m.Succeeded(info.Length, d)
	if a.opts.Leaser != nil {
		if err := a.opts.Leaser.Unlease(ctx, key); err != nil {
			a.log.Warn("archive: give back the lease", "key", key, "err", err) // it lapses
		}
	}
	a.log.Info("archived", "key", key, "bytes", info.Length, "crc32c", fmt.Sprintf("%08x", sum), "duration", d)
	a.scheduleDrop(key, info.Version, rec.At)
	if a.opts.Retention <= 0 {
		a.dropDue(ctx)
	}
	return nil
}

// upload streams the size bytes of st into the archive, then reads the object back to
// check that it holds them: same size, same CRC32C. It returns the CRC32C.
func (a *Archiver) upload(ctx context.Context, key string, st Stream, size int64) (uint32, error) {
	h := crc32.New(castagnoli)
	src := io.TeeReader(&streamReader{ctx: ctx, st: st, end: size}, h)
	if err := a.archive.Put(ctx, key, src, size); err != nil {
		return 0, err
	}
	want := h.Sum32()
	got, err := a.archive.Stat(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("stat after put: %w", err)
	}
	if got != size {
		return 0, fmt.Errorf("archived object has %d bytes, the stream %d", got, size)
	}
	rc, err := a.archive.Open(ctx, key, 0)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	defer rc.Close()
	h.Reset()
	n, err := io.Copy(h, rc)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	if n != size || h.Sum32() != want {
		return 0, fmt.Errorf("verify: archived object differs from the stream (%d bytes, crc32c %08x; want %d, %08x)", n, h.Sum32(), size, want)
	}
	return want, nil
}

func (a *Archiver) scheduleDrop(key, version string, at time.Time) {
	a.mu.Lock()
	a.drops[key] = drop{version: version, due: at.Add(a.opts.Retention)}
	a.mu.Unlock()
}

func (a *Archiver) dropDue(ctx context.Context) {
	now := time.Now()
	a.mu.Lock()
	due := make(map[string]drop)
	for k, d := range a.drops {
		if !d.due.After(now) {
			due[k] = d
			delete(a.drops, k)
		}
	}
	a.mu.Unlock()
	for k, d := range due {
		err := a.store.RemoveLive(ctx, k, d.version)
		switch {
		case err == nil:
			a.log.Info("live copy removed", "key", k)
		case errors.Is(err, ErrNotFound):
		default:
			a.log.Warn("remove live copy", "key", k, "err", err)
			a.mu.Lock()
			if _, ok := a.drops[k]; !ok {
				a.drops[k] = d // retried on the next tick
			}
			a.mu.Unlock()
		}
	}
}

// streamReader reads a stream from offset 0 to end as an io.Reader: the store's side of
// the pipe into an upload, pulled by the uploader one part at a time.
type streamReader struct {
	ctx      context.Context
	st       Stream
	off, end int64
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.end-r.off)]
	b, _, _, err := r.st.Read(r.ctx, p, r.off)
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, fmt.Errorf("stream shorter than %d bytes: %w", r.end, io.ErrUnexpectedEOF)
	}
	n := copy(p, b)
	r.off += int64(n)
	return n, nil
}

// noMetrics counts nothing.
type noMetrics struct{}

func (noMetrics) Started()                       {}
func (noMetrics) Failed()                        {}
func (noMetrics) Succeeded(int64, time.Duration) {}
func (noMetrics) Queued(int)                     {}
