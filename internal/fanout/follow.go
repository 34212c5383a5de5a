package fanout

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// ErrGone means a follower's connection is no longer there.
var ErrGone = errors.New("follower gone")

// bufPool holds the one buffer a follower uses while it moves bytes; a waiting
// follower holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Transport writes a stream's bytes to one follower in its protocol's framing.
type Transport interface {
	// Write sends b, the stream's bytes at offset off (info is the stream's state as
	// of the read that returned them), and reports how many it consumed: fewer than
	// len(b) only when, final being false, it holds back an incomplete character.
	Write(b []byte, off int64, info sluice.Info, final bool) (int, error)
	// Flush pushes what was written to the network, once the follower has caught up.
	Flush() error
	// Keepalive is called after the follower has been idle for Idle().
	Keepalive() error
	// Idle is how long a follower may go without a write; 0 means forever.
	Idle() time.Duration
}

// Outcome is why following ended.
type Outcome int

// The outcomes of Follow.
const (
	OutcomeClosed   Outcome = iota // the stream is closed and the follower has it all
	OutcomeCaughtUp                // not following, or the end asked for, reached
	OutcomeDrained                 // the server is shutting down
	OutcomePurged                  // the stream was purged
	OutcomeEnded                   // End ended the stream's followers
	OutcomeGone                    // the client went away, or a write failed
	OutcomeStalled                 // a write stalled past its deadline
)

// Follow sends the stream's bytes from off on to t, waiting for more as the stream
// grows, until the stream is closed and sent, end (if not -1) or the stored length
// (unless follow) is reached, the member is ended, the server drains, or ctx is done or
// the client goes. It waits for the stream in turns with its other followers. It
// returns the outcome and the offset it reached.
func (f *Fanout) Follow(ctx context.Context, m *Member, st sluice.Stream, t Transport, off, end int64, follow bool) (Outcome, int64) {
	var idle <-chan time.Time
	var timer *time.Timer
	if d := t.Idle(); d > 0 {
		timer = time.NewTimer(d)
		defer timer.Stop()
		idle = timer.C
	}
	a, _ := t.(Answerer)
	var owed <-chan struct{}
	if a != nil {
		owed = a.Owed()
	}
	for {
		o, next, changed, done := f.step(ctx, m, st, t, off, end, follow)
		off = next
		if done {
			return o, off
		}
		// The idle timer ticks whether or not bytes went out (the transport knows when it
		// last wrote), which spares a timer reset per write. A drain releases every waiter
		// (turns.stop), and catchUp then ends the follower.
		tn := f.turns.wait(m.key, changed)
		select {
		case <-tn.ready:
		case <-idle:
			f.turns.leave(m.key, tn)
			if err := t.Keepalive(); err != nil {
				return OutcomeGone, off
			}
			timer.Reset(t.Idle())
		case <-owed:
			f.turns.leave(m.key, tn)
			if err := a.Answer(); err != nil {
				return f.failed(err), off
			}
		case <-m.ended:
			f.turns.leave(m.key, tn)
			return endedBy(ctx, st, off), off
		case <-ctx.Done():
			f.turns.leave(m.key, tn)
			return OutcomeGone, off
		}
	}
}

// step sends what is stored from off on, and tells whether following is over (done,
// with its outcome) or where to wait from: the new offset and the channel that tells
// of the stream's next change.
func (f *Fanout) step(ctx context.Context, m *Member, st sluice.Stream, t Transport, off, end int64, follow bool) (o Outcome, next int64, changed <-chan struct{}, done bool) {
	next, info, changed, err := f.catchUp(ctx, m, st, t, off, end, follow)
	switch {
	case errors.Is(err, sluice.ErrNotFound):
		return OutcomePurged, next, nil, true
	case errors.Is(err, errEnded):
		return endedBy(ctx, st, next), next, nil, true
	case err != nil:
		return f.failed(err), next, nil, true
	case info.Closed && next >= info.Length:
		return OutcomeClosed, next, nil, true
	case end >= 0 && next >= end, !follow && next >= info.Length:
		return OutcomeCaughtUp, next, nil, true
	}
	return 0, next, changed, false
}

// failed tells why a catch-up failed with err.
func (f *Fanout) failed(err error) Outcome {
	switch {
	case f.drain.Err() != nil:
		return OutcomeDrained
	case errors.Is(err, os.ErrDeadlineExceeded):
		return OutcomeStalled
	}
	return OutcomeGone
}

// endedBy tells why End ended a follower at off: a purge ends the followers at once
// (OutcomePurged, as if they had read it), whichever of the End and the purge's wake-up
// they see first; anything else is OutcomeEnded.
func endedBy(ctx context.Context, st sluice.Stream, off int64) Outcome {
	if _, _, _, err := st.Read(ctx, nil, off); errors.Is(err, sluice.ErrNotFound) {
		return OutcomePurged
	}
	return OutcomeEnded
}

// errEnded stops a catch-up whose member was ended.
var errEnded = errors.New("follower ended")

// catchUp sends everything stored from off on (up to end) and returns the new offset,
// the Info of its last read and the channel that tells of the next change. It holds one
// pooled buffer while it works. A transport may hold back the last bytes it was given (an
// incomplete character); they are carried at the head of the buffer and sent with the
// bytes that follow them.
func (f *Fanout) catchUp(ctx context.Context, m *Member, st sluice.Stream, t Transport, off, end int64, follow bool) (int64, sluice.Info, <-chan struct{}, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	carry, wrote := 0, false
	for {
		// A long catch-up stops for a shutdown, an End or a client gone too.
		if err := stopped(ctx, f.drain, m.ended); err != nil {
			return off, sluice.Info{}, nil, err
		}
		b, info, changed, err := st.Read(ctx, buf[carry:], off+int64(carry))
		if err != nil {
			return off, info, changed, err
		}
		if carry > 0 {
			b = buf[:carry+copy(buf[carry:], b)]
		}
		if end >= 0 && off+int64(len(b)) > end {
			b = b[:end-off]
		}
		reached := off+int64(len(b)) >= info.Length || (end >= 0 && off+int64(len(b)) >= end)
		if len(b) == 0 {
			if wrote {
				err = t.Flush()
			}
			return off, info, changed, err
		}
		final := reached && (info.Closed || !follow || end >= 0)
		n, err := t.Write(b, off, info, final)
		if err != nil {
			return off, info, changed, err
		}
		off += int64(n)
		wrote = wrote || n > 0
		carry = copy(buf, b[n:])
		if reached {
			if wrote {
				err = t.Flush()
			}
			return off, info, changed, err
		}
	}
}

// stopped reports why a follower must stop now, if it must.
func stopped(ctx, drain context.Context, ended <-chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := drain.Err(); err != nil {
		return err
	}
	select {
	case <-ended:
		return errEnded
	default:
		return nil
	}
}

// ReaderAt reads a stream at any offset, copying views of the store's memory into p:
// what serves a closed stream as an ordinary file (http.ServeContent).
type ReaderAt struct {
	Ctx    context.Context
	Stream sluice.Stream
}

// ReadAt implements io.ReaderAt.
func (a ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		b, _, _, err := a.Stream.Read(a.Ctx, p[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if len(b) == 0 {
			return n, io.EOF
		}
		n += copy(p[n:], b)
	}
	return n, nil
}
