package file

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/tail"
)

// stream is the shared state of a stream with live handles.
type stream struct {
	store *Store
	key   string
	dir   string
	f     *os.File // the data file; ReadAt and WriteAt need no lock of their own; nil when archived
	base  int64    // the offset of the data file's first byte: a fork's base, else 0
	refs  int      // guarded by store.mu

	// source reads the bytes of a fork below its base; nil for other streams, and for
	// a fork read from the archive, which holds all of its bytes.
	source *handle
	// deleted is set once the stream is soft-deleted (deleted while forks read it).
	deleted bool // guarded by store.mu
	// access is when a stream with a TTL was last read or written, in Unix nanoseconds.
	access   atomic.Int64
	accessed atomic.Bool // since it was loaded: saved when its files close

	dirty atomic.Bool // has bytes not yet fsynced; see Store.markDirty

	mu      sync.Mutex // serialises writers
	readers int        // handles that have read: the tail is kept while there are any
	// closing is set while a close writes the stream's marker without the store's lock:
	// whoever clears it counts the stream as no longer open. Guarded by store.mu.
	closing bool
	snap    atomic.Pointer[tail.Snapshot]
	journal // the writers' state and its file (writers.go); guarded by mu
}

// purge ends the stream for its handles: their reads and writes fail from now on.
func (st *stream) purge() {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := *st.snap.Load()
	next.MarkPurged()
	tail.Publish(&st.snap, &next)
}

func (st *stream) append(ctx context.Context, src source, off int64, p []byte) (sluice.Info, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sn := st.snap.Load()
	p, err := sn.Admit(st.key, off, p, st.store.opts.MaxStreamSize, func(off int64, old []byte) error {
		return st.verify(ctx, sn, src, off, old)
	})
	if err != nil {
		return sn.Info, err
	}
	return st.appendLocked(sn, p)
}

// write appends w at the stream's end; see sluice.Stream.Write. The writers' state it
// changes is journalled before the bytes are written (writers.go).
func (st *stream) write(ctx context.Context, w sluice.Write) (sluice.Written, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sn := st.snap.Load()
	if sn.Purged {
		return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, sluice.ErrNotFound)
	}
	dup, err := st.writers.Admit(sn.Info, w)
	if err != nil {
		return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, err)
	}
	if dup {
		return st.written(sn.Info, w, true), nil
	}
	p, err := sn.Admit(st.key, sn.Info.Length, w.Data, st.store.opts.MaxStreamSize, nil)
	if err != nil {
		return sluice.Written{Info: sn.Info}, err
	}
	next, logged := st.writers, w.Producer != nil || w.Seq != ""
	if logged {
		next = st.writers.Applied(w, time.Now())
		if err := st.logWriters(sn.Info.Length, int64(len(p)), next); err != nil {
			return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, err)
		}
	}
	info, err := st.appendLocked(sn, p)
	if err == nil && w.Close {
		info, err = st.closeLocked()
	}
	if err != nil {
		if logged {
			st.unlogWriters() // the journal must not claim what was not stored
		}
		return sluice.Written{Info: info}, err
	}
	st.writers = next
	return st.written(info, w, false), nil
}

// written is what a write of w did, for a stream now in state info.
func (st *stream) written(info sluice.Info, w sluice.Write, dup bool) sluice.Written {
	wr := sluice.Written{Info: info, Duplicate: dup}
	if w.Producer != nil {
		wr.Producer = st.writers.Producers[w.Producer.ID]
	}
	return wr
}

// appendLocked stores p at the end of the stream in state sn; the caller holds st.mu.
func (st *stream) appendLocked(sn *tail.Snapshot, p []byte) (sluice.Info, error) {
	info := sn.Info
	if len(p) == 0 {
		return info, nil
	}
	at := info.Length - st.base
	if _, err := st.f.WriteAt(p, at); err != nil {
		st.f.Truncate(at) // best effort: nothing acknowledged lies beyond
		return info, fmt.Errorf("append to %s: %w", st.key, err)
	}
	st.store.diskBytes.Add(int64(len(p)))
	if st.store.opts.SyncInterval == 0 {
		if err := st.syncLocked(); err != nil {
			return info, fmt.Errorf("append to %s: fsync: %w", st.key, err)
		}
	} else {
		st.store.markDirty(st)
	}
	next := *sn
	next.Appended(info.Length, p, st.readers > 0, st.store.opts.TailSize)
	tail.Publish(&st.snap, &next)
	return next.Info, nil
}

// syncLocked makes the stream's writes so far durable; the caller holds st.mu, or the
// last reference.
func (st *stream) syncLocked() error {
	st.dirty.Store(false)
	return st.store.syncer.sync(st.unsynced()...)
}

// unsynced returns the files that may hold writes not yet durable: the journal, if it
// has new lines, and the data file. The caller holds st.mu, or the last reference.
func (st *stream) unsynced() []*os.File {
	var jf *os.File
	if st.jf != nil && st.jdirty {
		jf, st.jdirty = st.jf, false
	}
	return []*os.File{jf, st.f}
}

// verify checks resent bytes against those stored at off, read from the tail or src.
func (st *stream) verify(ctx context.Context, sn *tail.Snapshot, src source, off int64, p []byte) error {
	buf := make([]byte, min(len(p), 32<<10))
	return sluice.Verify(off, p, func(off int64) ([]byte, error) { return st.read(ctx, sn, src, buf, off) })
}

// source is where a handle reads the bytes that the tail does not hold: the data file,
// or the archive once the live copy is gone.
type source interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// fileSource is a stream's data file as a source, at the stream's offsets.
type fileSource struct {
	f    *os.File
	base int64
}

func (d fileSource) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return d.f.ReadAt(p, off-d.base)
}

// read returns bytes of sn from off on: a view of the tail when it holds them, a fork's
// source's below its base, or else a prefix of p read from src, up to where the tail
// starts.
func (st *stream) read(ctx context.Context, sn *tail.Snapshot, src source, p []byte, off int64) ([]byte, error) {
	if b, ok := sn.Read(off); ok {
		return b, nil
	}
	if st.source != nil && off < st.base {
		b, _, _, err := st.source.Read(ctx, p[:min(int64(len(p)), st.base-off)], off)
		return b[:min(int64(len(b)), st.base-off)], err
	}
	n := min(sn.Info.Length, sn.Tail.Start()) - off
	n = min(n, int64(len(p)))
	m, err := src.ReadAt(ctx, p[:n], off)
	if int64(m) == n {
		err = nil // io.EOF exactly at the end is no error
	}
	return p[:m], err
}

func (st *stream) close() (sluice.Info, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closeLocked()
}

// closeLocked closes the stream; the caller holds st.mu.
func (st *stream) closeLocked() (sluice.Info, error) {
	sn := st.snap.Load()
	switch {
	case sn.Purged:
		return sn.Info, fmt.Errorf("close %s: %w", st.key, sluice.ErrNotFound)
	case sn.Info.Closed:
		return sn.Info, nil
	}
	if err := st.syncLocked(); err != nil {
		return sn.Info, fmt.Errorf("close %s: fsync: %w", st.key, err)
	}
	if err := st.markClosed(); err != nil {
		return sn.Info, fmt.Errorf("close %s: %w", st.key, err)
	}
	next := *sn
	next.Info.Closed = true
	tail.Publish(&st.snap, &next)
	st.store.closes.Add(st.key)
	return next.Info, nil
}

// markClosed writes the stream's closed marker and syncs it, and counts the stream as
// closed. The syncs are made without the store's lock, which every stream's open and
// release take: with it, a thousand streams closing at once held every other stream's
// writers for a second. The marker is written through the directory's handle, taken
// under the lock while the directory is surely this stream's, so that a Purge that
// moves it meanwhile cannot have the marker land in a new stream of the same key; and
// Purge counts a close in flight itself (closedLocked), so the stream is counted once.
func (st *stream) markClosed() error {
	s := st.store
	s.mu.Lock()
	if s.streams[st.key] != st {
		s.mu.Unlock()
		return sluice.ErrNotFound
	}
	root, err := os.OpenRoot(st.dir)
	st.closing = err == nil
	s.mu.Unlock()
	if err != nil {
		return err
	}
	err = writeMarker(s.syncer, root, "closed")
	root.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	counted := st.closing
	st.closing = false
	switch {
	case err != nil:
		return err
	case s.streams[st.key] != st:
		return sluice.ErrNotFound // purged meanwhile, which counted it
	case counted && !st.deleted:
		s.open--
	}
	return nil
}

// startReading turns on the tail for the first reader: it is empty at the current
// length, as always without readers, and older bytes come from the file.
func (st *stream) startReading() {
	st.mu.Lock()
	st.readers++
	st.mu.Unlock()
}

// stopReading drops the tail with the last reader, so an unfollowed stream holds no memory.
func (st *stream) stopReading() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readers--; st.readers > 0 {
		return
	}
	next := *st.snap.Load()
	next.Tail.Reset(next.Info.Length)
	tail.Publish(&st.snap, &next)
}

// touch renews the TTL of a stream that has one: it was read or written now.
func (st *stream) touch() {
	if st.snap.Load().Info.Config.TTL > 0 {
		st.access.Store(time.Now().UnixNano())
		st.accessed.Store(true)
	}
}

// closeFiles fsyncs what needs it, closes the stream's files and saves when it was
// last accessed, once its last reference is gone.
func (st *stream) closeFiles() {
	if st.dirty.Load() {
		if err := st.syncLocked(); err != nil {
			st.store.log.Error("fsync stream", "key", st.key, "err", err)
		}
	}
	if st.f != nil { // nil for a stream read from the archive
		st.f.Close()
	}
	st.closeJournal()
	if st.accessed.Load() {
		saveAccess(st.dir, time.Unix(0, st.access.Load()))
	}
}

// handle is one holder's reference to a shared stream.
type handle struct {
	tail.Handle
	st    *stream
	touch bool // reads and writes renew the stream's TTL: false for a fork's source
}

// src is where the handle reads bytes the tail does not hold: the data file, or, for a
// stream whose live copy is gone, the archive, through one sequential reader per handle.
func (h *handle) src() source {
	if h.st.f != nil {
		return fileSource{h.st.f, h.st.base}
	}
	return h.Archive(h.st.store.opts.Archive, h.st.key)
}

// renew renews the stream's TTL, unless the handle is a fork's reader of its source.
func (h *handle) renew() {
	if h.touch {
		h.st.touch()
	}
}

func (h *handle) Info() sluice.Info { return h.st.snap.Load().Info }

func (h *handle) Append(ctx context.Context, off int64, p []byte) (sluice.Info, error) {
	h.renew()
	return h.st.append(ctx, h.src(), off, p)
}

func (h *handle) Write(ctx context.Context, w sluice.Write) (sluice.Written, error) {
	h.renew()
	return h.st.write(ctx, w)
}

func (h *handle) Close(ctx context.Context) (sluice.Info, error) {
	h.renew()
	return h.st.close()
}

// Read may be called concurrently, as sluice.Stream requires; the first call counts the
// handle as a reader once.
func (h *handle) Read(ctx context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
	h.Reading(h.st.startReading)
	h.renew()
	sn := h.st.snap.Load()
	if sn.Purged {
		return nil, sn.Info, sn.Changed, fmt.Errorf("read %s: %w", h.st.key, sluice.ErrNotFound)
	}
	b, err := h.st.read(ctx, sn, h.src(), p, off)
	if err != nil {
		return nil, sn.Info, sn.Changed, fmt.Errorf("read %s at %d: %w", h.st.key, off, err)
	}
	return b, sn.Info, sn.Changed, nil
}

func (h *handle) Release() { h.Handle.Release(h.st.stopReading, func() { h.st.store.release(h.st) }) }
