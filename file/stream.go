package file

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice"
)

// blockSize is the unit of a stream's in-memory tail. Blocks are never reused, so a
// follower may hold a view of one for as long as it likes.
const blockSize = 32 << 10

type block [blockSize]byte

// snapshot is a stream's state as followers see it. A new snapshot replaces the old one
// on every change, and the old one's changed channel is closed, so followers read
// without locks and wait without missing a change.
type snapshot struct {
	info   sluice.Info
	purged bool
	// The tail holds bytes [tailOff, info.Length) in blocks; blocks[i] holds
	// [base+i*blockSize, base+(i+1)*blockSize) where base is tailOff rounded down.
	tailOff int64
	base    int64
	blocks  []*block
	changed chan struct{}
}

// stream is the shared state of a stream with live handles.
type stream struct {
	store *Store
	key   string
	dir   string
	f     *os.File // the data file; ReadAt and WriteAt need no lock of their own; nil when archived
	refs  int      // guarded by store.mu

	dirty atomic.Bool // has bytes not yet fsynced; see Store.markDirty

	mu      sync.Mutex // serialises writers
	readers int        // handles that have read: the tail is kept while there are any
	snap    atomic.Pointer[snapshot]
}

// publish makes next the current snapshot; the caller holds st.mu. Followers are woken
// only when the stream itself changed.
func (st *stream) publish(next *snapshot) {
	prev := st.snap.Load()
	if next.info != prev.info || next.purged != prev.purged {
		next.changed = make(chan struct{})
		st.snap.Store(next)
		close(prev.changed)
		return
	}
	next.changed = prev.changed
	st.snap.Store(next)
}

func (st *stream) purge() {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := *st.snap.Load()
	next.purged, next.blocks = true, nil
	st.publish(&next)
}

func (st *stream) append(ctx context.Context, src io.ReaderAt, off int64, p []byte) (sluice.Info, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sn := st.snap.Load()
	info := sn.info
	switch {
	case sn.purged:
		return info, fmt.Errorf("append to %s: %w", st.key, sluice.ErrNotFound)
	case off > info.Length:
		return info, fmt.Errorf("append to %s at %d, length %d: %w", st.key, off, info.Length, sluice.ErrGap)
	}
	if skip := info.Length - off; skip > 0 {
		old := p[:min(int64(len(p)), skip)]
		if err := st.verify(sn, src, off, old); err != nil {
			return info, err
		}
		p = p[len(old):]
	}
	if len(p) == 0 {
		return info, nil
	}
	if info.Closed {
		return info, fmt.Errorf("append to %s: %w", st.key, sluice.ErrClosed)
	}
	if max := st.store.opts.MaxStreamSize; max > 0 && info.Length+int64(len(p)) > max {
		return info, fmt.Errorf("append to %s: %w (limit %d bytes)", st.key, sluice.ErrTooLarge, max)
	}
	if _, err := st.f.WriteAt(p, info.Length); err != nil {
		st.f.Truncate(info.Length) // best effort: nothing acknowledged lies beyond
		return info, fmt.Errorf("append to %s: %w", st.key, err)
	}
	if st.store.opts.SyncInterval == 0 {
		if err := st.f.Sync(); err != nil {
			return info, fmt.Errorf("append to %s: fsync: %w", st.key, err)
		}
	} else {
		st.store.markDirty(st)
	}
	next := *sn
	next.info.Length += int64(len(p))
	if st.readers > 0 {
		next.fill(p, info.Length, st.store.opts.TailSize)
	} else {
		next.tailOff, next.base, next.blocks = next.info.Length, next.info.Length, nil
	}
	st.publish(&next)
	return next.info, nil
}

// fill copies p, the bytes at offset at, into the tail, adding blocks as needed and
// dropping the oldest beyond limit bytes. The blocks slice is copied when it changes,
// never modified, since earlier snapshots share it.
func (sn *snapshot) fill(p []byte, at int64, limit int) {
	for len(p) > 0 {
		i := int((at - sn.base) / blockSize)
		if i == len(sn.blocks) {
			blocks := make([]*block, 0, len(sn.blocks)+1)
			blocks = append(append(blocks, sn.blocks...), new(block))
			if len(blocks)*blockSize > limit+blockSize {
				blocks = blocks[1:]
				sn.base += blockSize
				sn.tailOff = max(sn.tailOff, sn.base)
			}
			sn.blocks = blocks
			i = len(blocks) - 1
		}
		n := copy(sn.blocks[i][(at-sn.base)%blockSize:], p)
		p, at = p[n:], at+int64(n)
	}
}

// verify checks that p matches the stored bytes at off, so that a producer resending
// different bytes for the same offsets gets an error instead of a silent fork.
func (st *stream) verify(sn *snapshot, src io.ReaderAt, off int64, p []byte) error {
	buf := make([]byte, min(len(p), 32<<10))
	for len(p) > 0 {
		b, err := sn.read(src, buf, off)
		if err != nil {
			return fmt.Errorf("verify %s at %d: %w", st.key, off, err)
		}
		n := min(len(b), len(p))
		if !bytes.Equal(b[:n], p[:n]) {
			return fmt.Errorf("append to %s at %d: %w", st.key, off, sluice.ErrMismatch)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// read returns bytes from off on: a view of the tail when it holds them, or else a
// prefix of p read from f (the data file, or the archive).
func (sn *snapshot) read(f io.ReaderAt, p []byte, off int64) ([]byte, error) {
	n := sn.info.Length - off
	if n <= 0 {
		return nil, nil
	}
	if off >= sn.tailOff && len(sn.blocks) > 0 {
		i, j := (off-sn.base)/blockSize, (off-sn.base)%blockSize
		n = min(n, blockSize-j)
		return sn.blocks[i][j : j+n : j+n], nil
	}
	n = min(n, int64(len(p)))
	if sn.tailOff > off && len(sn.blocks) > 0 {
		n = min(n, sn.tailOff-off)
	}
	m, err := f.ReadAt(p[:n], off)
	if int64(m) == n {
		err = nil // io.EOF exactly at the end is no error
	}
	return p[:m], err
}

func (st *stream) close(ctx context.Context) (sluice.Info, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sn := st.snap.Load()
	switch {
	case sn.purged:
		return sn.info, fmt.Errorf("close %s: %w", st.key, sluice.ErrNotFound)
	case sn.info.Closed:
		return sn.info, nil
	}
	if err := st.f.Sync(); err != nil {
		return sn.info, fmt.Errorf("close %s: fsync: %w", st.key, err)
	}
	// The marker is written under the store's lock, as Purge reads it, so that a
	// concurrent Purge sees the stream either open or closed and counts it once, and
	// never moves the directory away between the marker and its fsync.
	st.store.mu.Lock()
	if st.store.streams[st.key] != st {
		st.store.mu.Unlock()
		return sn.info, fmt.Errorf("close %s: %w", st.key, sluice.ErrNotFound)
	}
	if err := writeFileSync(filepath.Join(st.dir, "closed"), nil); err != nil {
		st.store.mu.Unlock()
		return sn.info, fmt.Errorf("close %s: %w", st.key, err)
	}
	if err := syncDir(st.dir); err != nil {
		st.store.mu.Unlock()
		return sn.info, fmt.Errorf("close %s: %w", st.key, err)
	}
	st.store.open--
	st.store.mu.Unlock()
	next := *sn
	next.info.Closed = true
	st.publish(&next)
	if st.store.opts.OnClose != nil {
		st.store.opts.OnClose(st.key)
	}
	return next.info, nil
}

// startReading turns on the tail for the first reader; it starts at the current length,
// and older bytes come from the file.
func (st *stream) startReading() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readers++; st.readers > 1 {
		return
	}
	next := *st.snap.Load()
	next.tailOff, next.base, next.blocks = next.info.Length, next.info.Length-next.info.Length%blockSize, nil
	st.publish(&next)
}

// stopReading drops the tail with the last reader, so an unfollowed stream holds no memory.
func (st *stream) stopReading() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readers--; st.readers > 0 {
		return
	}
	next := *st.snap.Load()
	next.tailOff, next.base, next.blocks = next.info.Length, next.info.Length, nil
	st.publish(&next)
}

// handle is one holder's reference to a shared stream.
type handle struct {
	st       *stream
	reading  atomic.Bool // set once, by the first Read, which may race with others
	released atomic.Bool

	arMu sync.Mutex
	ar   *archiveReader // reads an archived stream; made by the first read
}

// src is where the handle reads bytes the tail does not hold: the data file, or, for a
// stream whose live copy is gone, the archive, through one sequential reader per handle.
func (h *handle) src() io.ReaderAt {
	if h.st.f != nil {
		return h.st.f
	}
	h.arMu.Lock()
	defer h.arMu.Unlock()
	if h.ar == nil {
		h.ar = &archiveReader{archive: h.st.store.opts.Archive, key: h.st.key}
	}
	return h.ar
}

func (h *handle) Info() sluice.Info { return h.st.snap.Load().info }

func (h *handle) Append(ctx context.Context, off int64, p []byte) (sluice.Info, error) {
	return h.st.append(ctx, h.src(), off, p)
}

func (h *handle) Close(ctx context.Context) (sluice.Info, error) { return h.st.close(ctx) }

// Read may be called concurrently, as sluice.Stream requires; the first call counts the
// handle as a reader once.
func (h *handle) Read(p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
	if !h.reading.Load() && h.reading.CompareAndSwap(false, true) {
		h.st.startReading()
	}
	sn := h.st.snap.Load()
	if sn.purged {
		return nil, sn.info, sn.changed, fmt.Errorf("read %s: %w", h.st.key, sluice.ErrNotFound)
	}
	b, err := sn.read(h.src(), p, off)
	if err != nil {
		return nil, sn.info, sn.changed, fmt.Errorf("read %s at %d: %w", h.st.key, off, err)
	}
	return b, sn.info, sn.changed, nil
}

func (h *handle) Release() {
	if h.released.Swap(true) {
		return
	}
	if h.reading.Load() {
		h.st.stopReading()
	}
	h.arMu.Lock()
	if h.ar != nil {
		h.ar.Close()
	}
	h.arMu.Unlock()
	h.st.store.release(h.st)
}
