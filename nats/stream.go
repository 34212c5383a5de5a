package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/tail"
)

// Message headers of a stream's chunks.
const (
	hdrOffset = "Sluice-Offset"
	hdrClose  = "Sluice-Close"
	hdrPurge  = "Sluice-Purge"
)

// snapshot is a stream's state as this process knows it (see package tail), with the
// sequence of the subject's last message, which must change together with the length.
type snapshot struct {
	tail.Snapshot
	lastSeq uint64 // stream sequence of the subject's last message known; 0 if none
}

// stream is the shared state of a stream with live handles in this process.
type stream struct {
	store        *Store
	key, version string
	subj         string
	refs         int // guarded by store.mu

	wmu     sync.Mutex // serialises this process's writers, so they rarely race each other
	lastPut time.Time  // when this process last published a chunk of the stream; wmu

	mu      sync.Mutex // guards snapshot changes and readers
	readers int
	snap    atomic.Pointer[snapshot]

	removed atomic.Bool // the live bytes are gone: read them from the archive

	subMu sync.Mutex // serialises starting and stopping the subscription
	sub   jetstream.ConsumeContext
}

func newStream(s *Store, key, version string, cfg sluice.Config) *stream {
	st := &stream{store: s, key: key, version: version, subj: s.subject(key, version)}
	st.snap.Store(&snapshot{Snapshot: tail.New(sluice.Info{Version: version, Config: cfg})})
	return st
}

// markPurged ends the stream for its handles here, once it is known to be purged.
func (st *stream) markPurged() {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := *st.snap.Load()
	next.MarkPurged()
	tail.Publish(&st.snap, &next)
}

// chunk is one message of a stream's subject.
type chunk struct {
	seq            uint64
	off            int64
	data           []byte
	closed, purged bool
}

func (c *chunk) end() int64 { return c.off + int64(len(c.data)) }

func parseChunk(seq uint64, h nats.Header, data []byte) (*chunk, error) {
	c := &chunk{seq: seq, data: data, closed: h.Get(hdrClose) != "", purged: h.Get(hdrPurge) != ""}
	if c.purged {
		return c, nil
	}
	off, err := strconv.ParseInt(h.Get(hdrOffset), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("message %d: bad %s header: %w", seq, hdrOffset, err)
	}
	c.off = off
	return c, nil
}

// apply folds a message of the subject into the state, whoever learnt of it first: this
// process's writer, the subscription, or a re-read of the subject's last message. Older
// messages are ignored, so each byte enters the tail once.
func (st *stream) apply(c *chunk) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sn := st.snap.Load()
	if c.seq <= sn.lastSeq || sn.Purged {
		return
	}
	next := *sn
	next.lastSeq = c.seq
	if c.purged {
		next.MarkPurged()
	} else {
		// The tail keeps c if it follows it; a jump (bytes written elsewhere, not seen
		// here) restarts it at the new end, and the bytes in between are fetched when read.
		next.Appended(c.off, c.data, st.readers > 0, st.store.opts.TailSize)
	}
	if c.closed {
		next.Info.Closed = true
	}
	tail.Publish(&st.snap, &next)
}

// refresh learns the true length and state from the subject's last message.
func (st *stream) refresh(ctx context.Context) error {
	var m *jetstream.RawStreamMsg
	err := st.store.retry(ctx, func(ctx context.Context) error {
		var err error
		m, err = st.store.js1.GetLastMsgForSubject(ctx, st.subj)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	c, err := parseChunk(m.Sequence, m.Header, m.Data)
	if err != nil {
		return err
	}
	st.apply(c)
	return nil
}

// append stores p at off: see sluice.Stream. Each chunk is published expecting the
// subject's last sequence this process knows; when another writer got there first, the
// true tail is re-read and the whole rule set applied again to what is left of p.
func (st *stream) append(ctx context.Context, h *handle, off int64, p []byte) (sluice.Info, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	refreshed := false
	small := len(p) < lingerBelow
	for {
		sn := st.snap.Load()
		info := sn.Info
		rest, err := sn.Admit(st.key, off, p, st.store.opts.MaxStreamSize, func(off int64, old []byte) error {
			return h.verify(ctx, sn, off, old)
		})
		if errors.Is(err, sluice.ErrGap) && !refreshed { // the length may have grown elsewhere
			refreshed = true
			if err := st.refresh(ctx); err != nil {
				return info, fmt.Errorf("append to %s: %w", st.key, err)
			}
			continue
		}
		if err != nil || len(rest) == 0 {
			return info, err
		}
		p, off = rest, info.Length
		n := min(len(p), st.store.opts.ChunkSize)
		start := time.Now()
		c, err := st.put(ctx, sn.lastSeq, off, p[:n], false)
		if wrongLastSeq(err) {
			refreshed = true
			if err := st.refresh(ctx); err != nil {
				return info, fmt.Errorf("append to %s: %w", st.key, err)
			}
			continue
		}
		if err != nil {
			return info, fmt.Errorf("append to %s: %w", st.key, err)
		}
		st.apply(c)
		prev := st.lastPut
		st.lastPut = start
		p, off = p[n:], off+int64(n)
		if len(p) == 0 {
			if small {
				st.linger(ctx, prev, start)
			}
			return st.snap.Load().Info, nil
		}
	}
}

// lingerBelow is the size of a write from which Append never lingers: a chunk this
// large carries its overhead (about 200 bytes a message: the subject, the offset and
// concurrency headers, JetStream's record) at under a tenth, and a producer writing this
// much at a time needs no wait to fill its chunks.
const lingerBelow = 2 << 10

// linger holds the Append of a small write to a busy stream until Linger after its
// chunk went out (at start). Append returns only once its bytes are stored, so the
// producer's next bytes cannot join that chunk; meanwhile they gather in the producer's
// connection, and the next Append takes them whole. So a producer writing a line at a
// time makes a chunk per Linger rather than one per line, its followers get each chunk
// as soon as it is stored, and nothing is acknowledged before it is. A stream is busy
// when its previous chunk went out (at prev) less than twice Linger before, since a held
// write's successor comes just after Linger; a write to an idle stream returns at once.
// A context that ends cuts the wait short: the bytes are stored already.
func (st *stream) linger(ctx context.Context, prev, start time.Time) {
	if l := st.store.opts.Linger; start.Sub(prev) < 2*l {
		backoff.Sleep(ctx, l-time.Since(start))
	}
}

// put publishes one message expecting the subject's last sequence to be last. A
// publish retried after a lost acknowledgement fails as a wrong last sequence if the
// first try was stored, and the caller's re-read then finds its bytes there.
func (st *stream) put(ctx context.Context, last uint64, off int64, p []byte, closed bool) (*chunk, error) {
	msg := nats.NewMsg(st.subj)
	msg.Header.Set(hdrOffset, strconv.FormatInt(off, 10))
	if closed {
		msg.Header.Set(hdrClose, "1")
	}
	msg.Data = bytes.Clone(p) // the caller's buffer is reused after Append returns
	var ack *jetstream.PubAck
	err := st.store.retry(ctx, func(ctx context.Context) error {
		var err error
		ack, err = st.store.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(last))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &chunk{seq: ack.Sequence, off: off, data: msg.Data, closed: closed}, nil
}

// close publishes the close marker at the stream's end, racing writers like an append.
func (st *stream) close(ctx context.Context) (sluice.Info, error) {
	return st.write(ctx, sluice.Write{Close: true})
}

// write appends w at the stream's end (see sluice.Stream.Write): its chunks and its
// close go in one atomic batch, expecting the subject's last sequence this process
// knows; when another writer got there first, the true tail is re-read and the write
// tried again there, so concurrent writers never interleave.
func (st *stream) write(ctx context.Context, w sluice.Write) (sluice.Info, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	for {
		sn := st.snap.Load()
		p, err := sn.Admit(st.key, sn.Info.Length, w.Data, st.store.opts.MaxStreamSize, nil)
		if err != nil {
			return sn.Info, err
		}
		if len(p) == 0 && (!w.Close || sn.Info.Closed) {
			if w.Close {
				// Closed already, and its open marker removed then, unless the closer
				// died first: removing it again costs a request and repairs that.
				st.store.unmark(ctx, st.key, st.version)
			}
			return sn.Info, nil
		}
		c, err := st.putAll(ctx, sn.lastSeq, sn.Info.Length, p, w.Close)
		if wrongLastSeq(err) {
			if err := st.refresh(ctx); err != nil {
				return sn.Info, fmt.Errorf("write to %s: %w", st.key, err)
			}
			continue
		}
		if err != nil {
			return sn.Info, fmt.Errorf("write to %s: %w", st.key, err)
		}
		st.apply(c)
		if w.Close {
			st.store.unmark(ctx, st.key, st.version)
			st.store.closes.Add(st.key)
		}
		return st.snap.Load().Info, nil
	}
}

// putAll publishes p at off, and the close if closed, expecting the subject's last
// sequence to be last: one message if it fits, else an atomic batch of chunks, which
// JetStream stores whole or not at all. It returns the whole as one chunk, whose
// sequence is the batch's last.
func (st *stream) putAll(ctx context.Context, last uint64, off int64, p []byte, closed bool) (*chunk, error) {
	size := st.store.opts.ChunkSize
	if len(p) <= size {
		return st.put(ctx, last, off, p, closed)
	}
	id := nuid.Next()
	data := bytes.Clone(p) // the caller's buffer is reused after Write returns
	for i, seq := 0, 1; i < len(data); i, seq = i+size, seq+1 {
		msg := nats.NewMsg(st.subj)
		msg.Data = data[i:min(i+size, len(data))]
		msg.Header.Set(hdrOffset, strconv.FormatInt(off+int64(i), 10))
		msg.Header.Set("Nats-Batch-Id", id)
		msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(seq))
		if i == 0 {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		}
		if i+size < len(data) {
			if err := st.store.nc.PublishMsg(msg); err != nil {
				return nil, err
			}
			continue
		}
		msg.Header.Set("Nats-Batch-Commit", "1")
		if closed {
			msg.Header.Set(hdrClose, "1")
		}
		ack, err := st.commitBatch(ctx, msg)
		if err != nil {
			return nil, err
		}
		return &chunk{seq: ack, off: off, data: data, closed: closed}, nil
	}
	panic("unreachable")
}

// commitBatch sends the last message of an atomic batch and returns the stream
// sequence JetStream acknowledged it with.
func (st *stream) commitBatch(ctx context.Context, msg *nats.Msg) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, st.store.opts.RequestTimeout)
	defer cancel()
	resp, err := st.store.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return 0, err
	}
	var ack struct {
		Error *jetstream.APIError `json:"error"`
		Seq   uint64              `json:"seq"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("batch acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	return ack.Seq, nil
}
