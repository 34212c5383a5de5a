package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/tail"
)

// readTimeout bounds one Read that has to fetch from JetStream, within its context.
const readTimeout = 30 * time.Second

// handle is one holder's reference to a shared stream. It remembers the last chunk it
// fetched, so a follower reading old bytes in order costs one fetch per chunk.
type handle struct {
	tail.Handle
	st    *stream
	touch bool // reads and writes renew the stream's TTL: false for a fork's source

	mu  sync.Mutex
	cur *chunk
}

func (h *handle) Info() sluice.Info { return h.st.snap.Load().Info }

// renew renews the stream's TTL, unless the handle is a fork's reader of its source.
func (h *handle) renew() {
	if h.touch && h.st.snap.Load().Info.Config.TTL > 0 {
		h.st.access.Store(time.Now().UnixNano())
		h.st.accessed.Store(true)
	}
}

func (h *handle) Append(ctx context.Context, off int64, p []byte) (sluice.Info, error) {
	h.renew()
	return h.st.append(ctx, h, off, p)
}

func (h *handle) Write(ctx context.Context, w sluice.Write) (sluice.Written, error) {
	h.renew()
	return h.st.write(ctx, w)
}

func (h *handle) Close(ctx context.Context) (sluice.Info, error) {
	h.renew()
	return h.st.close(ctx)
}

// Read serves recent bytes from the shared tail and older ones from JetStream. The first
// Read counts the handle as a follower, which makes the instance's one ordered consumer
// (follow) fold the stream's new messages into its tail.
func (h *handle) Read(ctx context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
	h.Reading(h.st.startReading)
	h.renew()
	sn := h.st.snap.Load()
	if sn.Purged {
		return nil, sn.Info, sn.Changed, fmt.Errorf("read %s: %w", h.st.key, sluice.ErrNotFound)
	}
	b, err := h.read(ctx, sn, p, off)
	if err != nil {
		return nil, sn.Info, sn.Changed, fmt.Errorf("read %s at %d: %w", h.st.key, off, err)
	}
	return b, sn.Info, sn.Changed, nil
}

// read returns bytes of sn from off on: a view of the tail, or of a fetched chunk (both
// immutable), at most len(p) bytes when p is not empty.
func (h *handle) read(ctx context.Context, sn *snapshot, p []byte, off int64) ([]byte, error) {
	if b, ok := sn.Read(off); ok {
		return b, nil
	}
	if src := h.st.source; src != nil && off < h.st.base && !h.st.removed.Load() {
		if len(p) > 0 {
			p = p[:min(int64(len(p)), h.st.base-off)]
		}
		b, _, _, err := src.Read(ctx, p, off)
		return b[:min(int64(len(b)), h.st.base-off)], err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	if h.st.removed.Load() {
		return h.readArchive(ctx, sn, p, off)
	}
	c, err := h.chunkAt(ctx, sn, off)
	if err != nil {
		if h.st.checkRemoved(ctx) { // archived and removed since this handle was opened
			return h.readArchive(ctx, sn, p, off)
		}
		return nil, err
	}
	b := c.data[off-c.off : min(c.end(), sn.Info.Length)-c.off]
	if len(p) > 0 && len(b) > len(p) {
		b = b[:len(p)]
	}
	return b[:len(b):len(b)], nil
}

// chunkAt finds the message holding offset off: the remembered one, the next one, or by
// binary search over sequences.
func (h *handle) chunkAt(ctx context.Context, sn *snapshot, off int64) (*chunk, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.cur; c != nil && c.off <= off && off < c.end() {
		return c, nil
	}
	if c := h.cur; c != nil && off == c.end() {
		if n, err := h.st.fetchNext(ctx, c.seq+1); err == nil && n.off <= off && off < n.end() {
			h.cur = n
			return n, nil
		}
	}
	c, err := h.st.search(ctx, off, sn.lastSeq)
	if errors.Is(err, errNoMessage) {
		// Seen once in many thousands of reads in cluster mode, under load, for a
		// message just stored: look once more, up to the subject's last message now.
		h.st.store.log.Warn("nats store: no message found for an offset; looking again", "key", h.st.key, "offset", off, "last_seq", sn.lastSeq)
		if err := h.st.refresh(ctx); err != nil {
			return nil, err
		}
		c, err = h.st.search(ctx, off, h.st.snap.Load().lastSeq)
	}
	if err != nil {
		return nil, err
	}
	h.cur = c
	return c, nil
}

// errNoMessage means a search found no message holding an offset.
var errNoMessage = errors.New("no message holds the offset")

// fetchNext returns the subject's first message at or after sequence seq.
func (st *stream) fetchNext(ctx context.Context, seq uint64) (*chunk, error) {
	var m *jetstream.RawStreamMsg
	err := st.store.retry(ctx, func(ctx context.Context) error {
		var err error
		m, err = st.store.js1.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(st.subj))
		return err
	})
	st.store.fetches.Add(1)
	if err != nil {
		return nil, err
	}
	c, err := parseChunk(m.Sequence, m.Header, m.Data)
	if err != nil {
		return nil, err
	}
	if c.purged {
		st.markPurged()
		return nil, sluice.ErrNotFound
	}
	return c, nil
}

// search finds the message holding offset off among sequences up to last by binary
// search: each probe fetches the subject's first message at or after a sequence, whose
// offset header says which half holds off. It costs O(log last) fetches, never a scan.
func (st *stream) search(ctx context.Context, off int64, last uint64) (*chunk, error) {
	lo, hi := uint64(1), last
	for lo <= hi {
		mid := lo + (hi-lo)/2
		c, err := st.fetchNext(ctx, mid)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hi = mid - 1
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case c.seq > hi || c.off > off:
			hi = mid - 1
		case off < c.end():
			return c, nil
		default:
			lo = c.seq + 1
		}
	}
	return nil, fmt.Errorf("%w %d", errNoMessage, off)
}

// verify checks resent bytes against those stored at off, read as views of the tail
// or of fetched chunks.
func (h *handle) verify(ctx context.Context, sn *snapshot, off int64, p []byte) error {
	return sluice.Verify(off, p, func(off int64) ([]byte, error) { return h.read(ctx, sn, nil, off) })
}

func (h *handle) Release() { h.Handle.Release(h.st.stopReading, func() { h.st.store.release(h.st) }) }

func (st *stream) startReading() {
	st.mu.Lock()
	st.readers++
	st.mu.Unlock()
}

// stopReading drops the tail with the last follower.
func (st *stream) stopReading() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.readers--; st.readers == 0 {
		next := *st.snap.Load()
		next.Tail.Reset(next.Info.Length)
		tail.Publish(&st.snap, &next)
	}
}

// follow subscribes this instance to every stream's messages from now on: one ordered
// consumer, whatever the number of streams and followers, whose messages apply folds
// into the state of the streams held here (the others' are dropped). A stream opened
// later first reads its subject's last message (refresh), and then misses none, since
// the consumer started before. Ordered consumers recreate themselves after a node or
// leader loss, from where they were.
func (s *Store) follow(ctx context.Context) error {
	return s.retry(ctx, func(ctx context.Context) error {
		cons, err := s.js.OrderedConsumer(ctx, s.opts.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{s.opts.Prefix + ".*.*"}, // the streams' subjects, not their writers'
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		})
		if err != nil {
			return err
		}
		s.sub, err = cons.Consume(s.receive)
		return err
	})
}

// receive folds a message into the stream it belongs to, if this instance holds it.
func (s *Store) receive(m jetstream.Msg) {
	s.mu.Lock()
	st := s.bySubject[m.Subject()]
	s.mu.Unlock()
	if st == nil {
		return
	}
	md, err := m.Metadata()
	if err != nil {
		return
	}
	c, err := parseChunk(md.Sequence.Stream, m.Headers(), m.Data())
	if err != nil {
		s.log.Error("nats store: bad message", "key", st.key, "err", err)
		return
	}
	st.apply(c)
}
