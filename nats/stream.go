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

	wmu       sync.Mutex     // serialises this process's writers, so they rarely race each other
	lastPut   time.Time      // when this process last published a chunk of the stream; wmu
	writers   sluice.Writers // the writers' state as of writersAt; wmu
	writersAt uint64         // the stream sequence of the message writers goes with; wmu

	mu      sync.Mutex // guards snapshot changes and readers
	readers int
	snap    atomic.Pointer[snapshot]

	removed atomic.Bool // the live bytes are gone: read them from the archive

	// base is the offset of a fork's first own byte, and source reads its bytes below
	// it; for other streams, 0 and nil.
	base   int64
	source sluice.Stream // set once, by Open, under store.mu
	// access is when a stream with a TTL was last read or written here, in Unix
	// nanoseconds; accessed tells that it was since it was loaded.
	access   atomic.Int64
	accessed atomic.Bool
}

func newStream(s *Store, key, version string, cfg sluice.Config) *stream {
	st := &stream{store: s, key: key, version: version, subj: s.subject(key, version)}
	if cfg.Fork != nil {
		st.base = cfg.Fork.Base
	}
	st.snap.Store(&snapshot{Snapshot: tail.New(sluice.Info{Length: st.base, Version: version, Config: cfg})})
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
	w, err := st.write(ctx, sluice.Write{Close: true})
	return w.Info, err
}

// write appends w at the stream's end (see sluice.Stream.Write): its chunks, its close
// and the writers' state it changes go in one atomic batch, expecting the subject's
// last sequence this process knows; when another writer got there first, the true tail
// is re-read and the write tried again there, so concurrent writers never interleave.
func (st *stream) write(ctx context.Context, w sluice.Write) (sluice.Written, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	for {
		sn := st.snap.Load()
		if sn.Purged {
			return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, sluice.ErrNotFound)
		}
		logged := w.Producer != nil || w.Seq != ""
		var ws sluice.Writers
		if logged {
			var err error
			if ws, err = st.loadWriters(ctx, sn.lastSeq); err != nil {
				return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, err)
			}
		}
		dup, err := ws.Admit(sn.Info, w)
		if err != nil || dup {
			return written(sn.Info, ws, w, dup), wrapf(err, "write to %s: %w", st.key)
		}
		p, err := sn.Admit(st.key, sn.Info.Length, w.Data, st.store.opts.MaxStreamSize, nil)
		if err != nil {
			return sluice.Written{Info: sn.Info}, err
		}
		if len(p) == 0 && (!w.Close || sn.Info.Closed) && !logged {
			if w.Close {
				// Closed already, and its open marker removed then, unless the closer
				// died first: removing it again costs a request and repairs that.
				st.store.unmark(ctx, st.key, st.version)
			}
			return sluice.Written{Info: sn.Info}, nil
		}
		var state []byte
		if logged {
			ws = ws.Applied(w, time.Now())
			state, _ = json.Marshal(ws)
		}
		c, err := st.putAll(ctx, sn.lastSeq, sn.Info.Length, p, w.Close, state)
		if wrongLastSeq(err) {
			if err := st.refresh(ctx); err != nil {
				return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, err)
			}
			continue
		}
		if err != nil {
			return sluice.Written{Info: sn.Info}, fmt.Errorf("write to %s: %w", st.key, err)
		}
		st.apply(c)
		if logged {
			st.writers, st.writersAt = ws, c.seq
		}
		if w.Close {
			st.store.unmark(ctx, st.key, st.version)
			st.store.closes.Add(st.key)
		}
		return written(st.snap.Load().Info, ws, w, false), nil
	}
}

// written is what a write w did, for a stream now in state info with writers ws.
func written(info sluice.Info, ws sluice.Writers, w sluice.Write, dup bool) sluice.Written {
	wr := sluice.Written{Info: info, Duplicate: dup}
	if w.Producer != nil {
		wr.Producer = ws.Producers[w.Producer.ID]
	}
	return wr
}

// wrapf wraps err as fmt.Errorf(format, args..., err) does, and keeps nil nil.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format, append(args, err)...)
}

// writersSubject is where a stream's writers' state is kept: the last message of the
// subject, which replaces those before (a rollup), written in the same atomic batch as
// the bytes it guards.
func (st *stream) writersSubject() string { return st.subj + ".writers" }

// loadWriters returns the stream's writers' state as of the stream's last message at
// sequence last: the one this process knows, or else the last of the writers' subject.
// A state read after last is newer than the bytes this process knows: the write that
// uses it then finds another writer got there first, and reads both again. The caller
// holds st.wmu.
func (st *stream) loadWriters(ctx context.Context, last uint64) (sluice.Writers, error) {
	if st.writersAt == last && last != 0 {
		return st.writers, nil
	}
	var m *jetstream.RawStreamMsg
	err := st.store.retry(ctx, func(ctx context.Context) error {
		var err error
		m, err = st.store.js1.GetLastMsgForSubject(ctx, st.writersSubject())
		return err
	})
	var ws sluice.Writers
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		st.writers, st.writersAt = ws, last
		return ws, nil
	}
	if err != nil {
		return ws, fmt.Errorf("writers: %w", err)
	}
	if err := json.Unmarshal(m.Data, &ws); err != nil {
		return ws, fmt.Errorf("writers: %w", err)
	}
	st.writers, st.writersAt = ws, last
	return ws, nil
}

// putAll publishes p at off, and the close if closed, and the writers' state if any,
// expecting the subject's last sequence to be last: one message if it fits, else an
// atomic batch, which JetStream stores whole or not at all. It returns the whole as one
// chunk, whose sequence is the bytes' last message's.
func (st *stream) putAll(ctx context.Context, last uint64, off int64, p []byte, closed bool, state []byte) (*chunk, error) {
	size := st.store.opts.ChunkSize
	if len(p) <= size && state == nil {
		return st.put(ctx, last, off, p, closed)
	}
	b := batch{id: nuid.Next(), st: st}
	if state != nil { // first, so that the bytes' last message is the batch's last
		msg := nats.NewMsg(st.writersSubject())
		msg.Header.Set("Nats-Rollup", "sub")
		msg.Data = state
		if err := b.add(ctx, msg, false); err != nil {
			return nil, err
		}
	}
	data := bytes.Clone(p) // the caller's buffer is reused after Write returns
	for i := 0; i == 0 || i < len(data); i += size {
		msg := nats.NewMsg(st.subj)
		msg.Data = data[i:min(i+size, len(data))]
		msg.Header.Set(hdrOffset, strconv.FormatInt(off+int64(i), 10))
		if i == 0 {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
		}
		final := i+size >= len(data)
		if final && closed {
			msg.Header.Set(hdrClose, "1")
		}
		if err := b.add(ctx, msg, final); err != nil {
			return nil, err
		}
	}
	return &chunk{seq: b.ack, off: off, data: data, closed: closed}, nil
}

// batch is an atomic batch being published.
type batch struct {
	st    *stream
	id    string
	n     int
	bytes int    // published so far
	ack   uint64 // the stream sequence of the last message, once committed
}

// add publishes msg as the batch's next message, and commits the batch with it if last.
func (b *batch) add(ctx context.Context, msg *nats.Msg, last bool) error {
	b.n++
	b.bytes += len(msg.Data)
	msg.Header.Set("Nats-Batch-Id", b.id)
	msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(b.n))
	if !last {
		return b.st.store.nc.PublishMsg(msg)
	}
	msg.Header.Set("Nats-Batch-Commit", "1")
	var err error
	b.ack, err = b.st.commitBatch(ctx, msg, b.bytes)
	return err
}

// commitBatch sends the last message of an atomic batch of size bytes and returns the
// stream sequence JetStream acknowledged it with. JetStream answers once it has stored
// and replicated the whole batch, so the wait allows RequestTimeout and a second a MiB:
// a 10 MiB batch took more than 2 s on a busy machine, and failed.
func (st *stream) commitBatch(ctx context.Context, msg *nats.Msg, size int) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, st.store.opts.RequestTimeout+time.Duration(size)*time.Second/(1<<20))
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
