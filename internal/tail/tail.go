// Package tail is the in-memory state of a stream that both stores (file, nats) share
// among the handles on it in one process: its Info as followers see it, a channel
// closed when that changes, and its tail, the recent bytes kept in memory while it has
// readers, so that followers at the end read them without touching the disk or
// JetStream.
//
// The state is a Snapshot, never changed once published and replaced whole on every
// change (Publish), so that a follower's Read is one atomic load with no lock, and a
// follower waiting on Changed misses no change. The tail's blocks are never reused, so
// a Read hands out a view of a block, not a copy, that stays valid and unchanged for as
// long as the follower holds it.
package tail

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice"
)

// BlockSize is the unit of the tail: a view of it ends at most at the end of a block.
const BlockSize = 32 << 10

type block [BlockSize]byte

// Snapshot is a stream's state at one moment. A store keeps a pointer to the current
// one, or to its own type that embeds it with what must change together with it.
type Snapshot struct {
	Info   sluice.Info
	Purged bool
	Tail   Tail
	// Changed is closed when a later snapshot has another Info or Purged.
	Changed chan struct{}
}

// New returns the first snapshot of a stream, with an empty tail.
func New(info sluice.Info) Snapshot {
	s := Snapshot{Info: info, Changed: make(chan struct{})}
	s.Tail.Reset(info.Length)
	return s
}

// snapshot gives Publish the Snapshot in a store's own snapshot type, which embeds it.
func (s *Snapshot) snapshot() *Snapshot { return s }

// Publish makes next the current snapshot in cur; the caller holds the lock that orders
// the stream's changes. Followers are woken (the previous snapshot's Changed closed,
// once next is visible) only when the stream itself changed, not when just the tail or
// the store's own state did, since they would find nothing new to read.
func Publish[S any, P interface {
	*S
	snapshot() *Snapshot
}](cur *atomic.Pointer[S], next P) {
	prev, n := P(cur.Load()).snapshot(), next.snapshot()
	if n.Info == prev.Info && n.Purged == prev.Purged {
		n.Changed = prev.Changed
		cur.Store(next)
		return
	}
	n.Changed = make(chan struct{})
	cur.Store(next)
	close(prev.Changed)
}

// MarkPurged records that the stream is gone, and drops its tail.
func (s *Snapshot) MarkPurged() {
	s.Purged = true
	s.Tail.Reset(s.Info.Length)
}

// Appended records that p was stored at off. The stream's length grows to p's end, and
// the tail keeps p if keep (the stream has readers) and p follows the tail, which always
// ends at the length. Otherwise the tail restarts, empty, at the new length: bytes
// written before it are read from the store's own storage.
func (s *Snapshot) Appended(off int64, p []byte, keep bool, limit int) {
	if keep && off == s.Info.Length {
		s.Tail.fill(p, off, limit)
		s.Info.Length += int64(len(p))
		return
	}
	s.Info.Length = max(s.Info.Length, off+int64(len(p)))
	s.Tail.Reset(s.Info.Length)
}

// Read returns the bytes from off on that the tail holds: a view of one block, up to
// its end, that never changes. ok is false when the tail does not hold off, and the
// caller reads from its own storage. At or after the length there is nothing to read:
// no bytes, and ok.
func (s *Snapshot) Read(off int64) (b []byte, ok bool) {
	n := s.Info.Length - off
	if n <= 0 {
		return nil, true
	}
	t := &s.Tail
	if off < t.start || len(t.blocks) == 0 {
		return nil, false
	}
	i, j := (off-t.base)/BlockSize, (off-t.base)%BlockSize
	n = min(n, BlockSize-j)
	return t.blocks[i][j : j+n : j+n], true
}

// Tail holds a stream's bytes from Start to its length, in blocks: blocks[i] holds
// [base+i*BlockSize, base+(i+1)*BlockSize), base being a multiple of BlockSize. It is
// part of a snapshot, so the blocks slice is shared with earlier snapshots: it is
// replaced, never modified, and bytes are only ever written to a block beyond the
// length that those earlier snapshots show.
type Tail struct {
	start, base int64
	blocks      []*block
}

// Reset empties the tail and starts it at length. Its blocks are freed once no
// snapshot or follower's view holds them.
func (t *Tail) Reset(length int64) {
	t.start, t.base, t.blocks = length, length-length%BlockSize, nil
}

// Start is the offset of the first byte the tail holds (the length when it is empty).
func (t *Tail) Start() int64 { return t.start }

// Blocks is how many blocks the tail holds.
func (t *Tail) Blocks() int { return len(t.blocks) }

// fill copies p, the bytes at offset at, into the tail, adding blocks as needed and
// dropping the oldest beyond limit bytes.
func (t *Tail) fill(p []byte, at int64, limit int) {
	for len(p) > 0 {
		i := int((at - t.base) / BlockSize)
		if i == len(t.blocks) {
			blocks := make([]*block, 0, len(t.blocks)+1)
			blocks = append(append(blocks, t.blocks...), new(block))
			if len(blocks)*BlockSize > limit+BlockSize {
				blocks = blocks[1:]
				t.base += BlockSize
				t.start = max(t.start, t.base)
			}
			t.blocks = blocks
			i = len(blocks) - 1
		}
		n := copy(t.blocks[i][(at-t.base)%BlockSize:], p)
		p, at = p[n:], at+int64(n)
	}
}

// Admit applies sluice.Info.Admit to p at off for the stream in state s, which must not
// be purged (sluice.ErrNotFound); key names the stream in errors. It returns the new
// bytes, which the store then stores at the length.
func (s *Snapshot) Admit(key string, off int64, p []byte, maxSize int64, verify func(off int64, old []byte) error) ([]byte, error) {
	if s.Purged {
		return nil, fmt.Errorf("append to %s: %w", key, sluice.ErrNotFound)
	}
	p, err := s.Info.Admit(off, p, maxSize, verify)
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", key, err)
	}
	return p, nil
}

// Handle is what every store's handle on a stream keeps: whether it has read (a
// handle that reads keeps the stream's tail), whether it was released, and the reader
// of the stream's archive once its live copy is gone.
type Handle struct {
	reading  atomic.Bool // set once, by the first Read, which may race with others
	released atomic.Bool

	mu sync.Mutex
	ar *sluice.ArchiveReader
}

// Reading calls start once, at the handle's first read.
func (h *Handle) Reading(start func()) {
	if !h.reading.Load() && h.reading.CompareAndSwap(false, true) {
		start()
	}
}

// Archive returns the handle's reader of the object of key in a, made at the first call.
func (h *Handle) Archive(a sluice.Archive, key string) *sluice.ArchiveReader {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ar == nil {
		h.ar = sluice.NewArchiveReader(a, key)
	}
	return h.ar
}

// Release gives the handle back once: it calls stop if the handle has read, ends its
// archive reader, and calls release; later calls do nothing.
func (h *Handle) Release(stop, release func()) {
	if h.released.Swap(true) {
		return
	}
	if h.reading.Load() {
		stop()
	}
	h.mu.Lock()
	if h.ar != nil {
		h.ar.Close()
	}
	h.mu.Unlock()
	release()
}
