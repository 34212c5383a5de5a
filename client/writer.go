package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/backoff"
)

// ErrNotDelivered is returned by Writer.Close when the server did not confirm every byte
// before the deadline, or refused them; it wraps the cause.
var ErrNotDelivered = errors.New("stream not fully delivered")

// errWriterClosed is returned by Write after Close.
var errWriterClosed = errors.New("sluice: write to a closed Writer")

// errAbandoned ends the body of a publish that the sender no longer waits for.
var errAbandoned = errors.New("sluice: publish abandoned")

const (
	// ackInterval is how long a publish body may stay open while the sender has nothing
	// more to send. The server acknowledges bytes (Stream-Length) only in the response,
	// which comes when the body ends, so a body is ended this long after it started, at
	// the first moment it has sent everything written so far, and the next bytes go in a
	// new request. A busy producer's bytes still flow without pause.
	ackInterval = time.Second
	// maxBody bounds one publish body, so that a producer that never pauses still gets
	// acknowledgements every few MiB.
	maxBody = 4 << 20
	// stallTimeout bounds how long a request may make no progress (the transport taking
	// no body bytes, or no response after the body) before it is given up and retried,
	// so that a connection lost without a reset does not hang the sender.
	stallTimeout = 30 * time.Second
)

// WriterOptions tune a Writer. Zero values mean the defaults in brackets.
type WriterOptions struct {
	Client       *http.Client               // [a client with a 5s connect timeout, keepalive, no overall timeout]
	Header       http.Header                // extra headers on every request (e.g. Request-Id)
	SpoolDir     string                     // where the spool file lives [os.TempDir()]
	MinBackoff   time.Duration              // first retry delay [100ms]; doubles, with jitter
	MaxBackoff   time.Duration              // [5s]
	MaxAttempts  int                        // consecutive failed attempts before giving up; 0 = until Close's deadline
	CloseTimeout time.Duration              // how long Close waits for delivery [30s]
	Logger       *slog.Logger               // [discard]
	OnProgress   func(written, acked int64) // optional; called from the sender goroutine after each ack
}

// Writer publishes a stream, surviving dropped connections and server restarts without
// losing or repeating a byte. Write appends to a local spool file and returns: it never
// waits for the network, so a producer (a CI job's output) is never slowed or stopped by
// it. One sender goroutine publishes the spool with Stream-Offset, and after any failure
// asks the server where its copy ends (HEAD) and resumes from there, after a backoff.
//
// Why a spool file: a reconnecting publisher must resend the bytes the server did not
// get, and those may have been read from the producer long ago. A pipe cannot be read
// twice, and bytes held only by a broken connection are lost. With every written byte in
// the spool, the sender can resume from any offset, and its retries never hold up the
// producer. The spool is unlinked as soon as it is created (where the system allows), so
// that not even a killed process leaves it behind; its space is freed when it is closed.
type Writer struct {
	url    string // as given, for requests
	safe   string // redacted, for logs and errors
	opts   WriterOptions
	client *http.Client
	own    bool // the client is ours to close
	log    *slog.Logger
	spool  *os.File
	path   string // the spool's path while it has one (systems that cannot unlink open files)

	ctx    context.Context // cancelled when Close stops waiting
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the sender has exited

	mu      sync.Mutex
	written int64
	closing bool
	changed chan struct{} // closed and replaced when written or closing change
	err     error         // why the sender stopped without delivering everything

	acked     atomic.Int64
	closeOnce sync.Once
	closeErr  error
}

// NewWriter starts publishing to the stream at url (http://host/streams/key). Bytes written
// are appended to a spool file first, and a background sender publishes them.
func NewWriter(url string, opts WriterOptions) (*Writer, error) {
	if err := checkURL(url); err != nil {
		return nil, err
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 30 * time.Second
	}
	w := &Writer{url: url, safe: redact(url), opts: opts, client: opts.Client, log: opts.Logger,
		changed: make(chan struct{}), done: make(chan struct{})}
	if w.client == nil {
		w.client, w.own = newClient(), true
	}
	if w.log == nil {
		w.log = discardLogger
	}
	w.log = w.log.With("url", w.safe)
	f, err := os.CreateTemp(opts.SpoolDir, "sluice-spool-*")
	if err != nil {
		return nil, fmt.Errorf("sluice: spool: %w", err)
	}
	w.spool = f
	if os.Remove(f.Name()) != nil {
		w.path = f.Name() // removed by Close instead
	}
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	go w.send()
	return w, nil
}

// Write appends p to the spool and returns; it never blocks on the network. After Close,
// or once the sender has given up (a permanent error such as a 409, or MaxAttempts
// failures), it returns an error: those bytes could never be delivered.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return 0, errWriterClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.spool.Write(p)
	if n > 0 {
		w.written += int64(n)
		w.signal()
	}
	if err != nil {
		return n, fmt.Errorf("sluice: spool: %w", err)
	}
	return n, nil
}

// Close closes the stream and waits, up to CloseTimeout, until the server has confirmed
// every byte. It returns nil when the stream is closed with exactly the bytes written, or
// an error wrapping ErrNotDelivered and the cause. It always releases the spool and the
// sender; calling it again returns the same result.
func (w *Writer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.CloseTimeout)
	defer cancel()
	return w.CloseContext(ctx)
}

// CloseContext is Close bounded by ctx instead of CloseTimeout.
func (w *Writer) CloseContext(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closing = true
		w.signal()
		w.mu.Unlock()
		select {
		case <-w.done:
		case <-ctx.Done():
			w.cancel(fmt.Errorf("close: %w", context.Cause(ctx)))
			<-w.done
		}
		w.cancel(nil)
		w.spool.Close()
		if w.path != "" {
			os.Remove(w.path)
		}
		if w.own {
			w.client.CloseIdleConnections()
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			w.closeErr = fmt.Errorf("%w (%d of %d bytes acknowledged): %w", ErrNotDelivered, w.acked.Load(), w.written, w.err)
		}
	})
	return w.closeErr
}

// Acked returns how many bytes the server has confirmed storing. It never exceeds what
// the server really stored: it comes only from the server's Stream-Length.
func (w *Writer) Acked() int64 { return w.acked.Load() }

// signal wakes whoever waits for w.changed. w.mu must be held.
func (w *Writer) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// state returns what the sender needs to know of the producer's side.
func (w *Writer) state() (written int64, closing bool, changed <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written, w.closing, w.changed
}

// ack records that the server holds n of the written bytes.
func (w *Writer) ack(n int64) {
	if old := w.acked.Swap(n); n < old {
		w.log.Warn("the server holds fewer bytes than it acknowledged; resending them", "acked", old, "length", n)
	}
	if w.opts.OnProgress != nil {
		written, _, _ := w.state()
		w.opts.OnProgress(written, n)
	}
}

// send is the sender goroutine. It publishes from off, the end of the server's copy as
// last heard; after a failure it waits a backoff and asks the server (resync) before
// publishing again. It returns when the stream is closed with everything, on a
// permanent error, after MaxAttempts failures, or when Close stops waiting.
func (w *Writer) send() {
	defer close(w.done)
	var (
		off      int64 // the server's length: a new stream is empty
		resync   bool
		failures int
		lastErr  error
	)
	for {
		var err error
		done := false
		before := w.acked.Load()
		if resync {
			off, done, err = w.resync()
		}
		if err == nil && !done {
			off, done, err = w.publish(off)
		}
		if done {
			return
		}
		if err == nil || w.acked.Load() > before {
			failures = 0 // progress
		}
		if err == nil {
			resync = false
			continue
		}
		if w.ctx.Err() != nil {
			if lastErr != nil {
				err = fmt.Errorf("%w; last error: %w", context.Cause(w.ctx), lastErr)
			} else {
				err = context.Cause(w.ctx)
			}
			w.stop(err)
			return
		}
		if permanent(err) {
			w.log.Error("publish refused; not retrying", "err", err)
			w.stop(err)
			return
		}
		lastErr = err
		failures++
		if w.opts.MaxAttempts > 0 && failures >= w.opts.MaxAttempts {
			w.log.Error("giving up", "attempts", failures, "err", err)
			w.stop(fmt.Errorf("giving up after %d failed attempts: %w", failures, err))
			return
		}
		delay := retryDelay(err, backoff.Delay(w.opts.MinBackoff, w.opts.MaxBackoff, failures-1))
		w.log.Warn("publish failed; retrying", "err", err, "attempt", failures, "delay", delay)
		resync = true
		backoff.Sleep(w.ctx, delay) // a Close that stops waiting is noticed on the next turn
	}
}

// stop records why the sender stopped without delivering everything.
func (w *Writer) stop(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// resync asks the server where its copy of the stream ends (HEAD), and returns the
// offset to publish from, and whether the stream is already closed with everything.
// An unknown stream is published from 0: the next POST creates it.
func (w *Writer) resync() (off int64, done bool, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, stallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, w.url, nil)
	if err != nil {
		return 0, false, err
	}
	setHeaders(req, w.opts.Header)
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, false, redactErr(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		w.ack(0)
		return 0, false, nil
	case http.StatusOK:
	default:
		return 0, false, responseError(resp)
	}
	length, closed, err := streamInfo(resp.Header)
	if err != nil {
		return 0, false, fmt.Errorf("HEAD %s: %w", w.safe, err)
	}
	return w.heard(length, closed, w.acked.Load())
}

// heard takes in the server's length and state, and returns where to publish from and
// whether the stream is closed with everything. A server that holds more bytes than
// were written (another producer, or an earlier run resending from 0) is published to
// from own, the writer's own confirmed position: the server skips and checks the overlap.
func (w *Writer) heard(length int64, closed bool, own int64) (off int64, done bool, err error) {
	written, closing, _ := w.state()
	off = length
	if length > written {
		off = min(own, written)
	}
	w.ack(off)
	switch {
	case closed && closing && length == written:
		return off, true, nil
	case closed && length > written:
		return off, false, &conflict{fmt.Sprintf("the stream was closed with %d bytes, more than the %d written", length, written), sluice.ErrMismatch}
	case closed && length < written:
		return off, false, &conflict{fmt.Sprintf("the stream was closed by someone else at %d bytes, of the %d written", length, written), sluice.ErrClosed}
	}
	return off, false, nil
}

// publish sends one POST of the spool from off: the body runs until it has sent all
// written bytes, and then either the Writer is closing or ackInterval has passed since
// it began (see ackInterval and maxBody). A POST started while closing carries the rest
// of the spool and closes the stream. It returns the server's length and whether the
// stream is closed with everything.
func (w *Writer) publish(off int64) (next int64, done bool, err error) {
	// Wait until there is something to send, or the stream is to be closed.
	written, closing, changed := w.state()
	for written <= off && !closing {
		select {
		case <-changed:
		case <-w.ctx.Done():
			return off, false, context.Cause(w.ctx)
		}
		written, closing, changed = w.state()
	}
	last := closing && written-off <= maxBody
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	body := &spoolBody{w: w, ctx: ctx, start: off, off: off, last: last, began: time.Now(),
		stall: time.AfterFunc(stallTimeout, cancel)}
	defer body.stall.Stop()
	var rc io.ReadCloser = body
	if last && written == off {
		rc = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, rc)
	if err != nil {
		return off, false, err
	}
	if rc == body {
		req.ContentLength = -1 // unknown: chunked, without probing the body
	}
	req.Header.Set("Stream-Offset", strconv.FormatInt(off, 10))
	if !last {
		req.Header.Set("Stream-Close", "false")
	}
	setHeaders(req, w.opts.Header)
	resp, err := w.client.Do(req)
	body.abandon()
	if err != nil {
		err = redactErr(err)
		if body.sent() > 0 {
			err = fmt.Errorf("after sending %d bytes from offset %d: %w", body.sent(), off, err)
		}
		return off, false, err
	}
	if resp.StatusCode != http.StatusOK {
		err := responseError(resp)
		if errors.Is(err, sluice.ErrGap) {
			err = fmt.Errorf("the server has fewer bytes than the %d it acknowledged: it lost data, or the stream was purged: %w", off, err)
		}
		return off, false, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	length, closed, err := streamInfo(resp.Header)
	if err != nil {
		return off, false, fmt.Errorf("POST %s: %w", w.safe, err)
	}
	w.log.Debug("published", "from", off, "bytes", body.sent(), "length", length, "closed", closed)
	return w.heard(length, closed, off+body.sent())
}

// spoolBody is the body of one publish: it reads the spool from start, waiting for the
// producer's next bytes, until it ends as publish describes. Write wakes it.
type spoolBody struct {
	w     *Writer
	ctx   context.Context
	start int64
	last  bool // it closes the stream: it must carry everything written
	began time.Time
	stall *time.Timer

	off       int64        // next offset to send; only Read uses it
	carried   atomic.Int64 // off, for the sender
	abandoned bool         // guarded by w.mu
}

func (b *spoolBody) Read(p []byte) (int, error) {
	for {
		b.w.mu.Lock()
		written, closing, changed, abandoned := b.w.written, b.w.closing, b.w.changed, b.abandoned
		if !abandoned {
			b.stall.Reset(stallTimeout) // the transport is taking bytes: progress
		}
		b.w.mu.Unlock()
		if abandoned {
			return 0, errAbandoned
		}
		sent := b.off - b.start
		if !b.last && sent >= maxBody {
			return 0, io.EOF
		}
		if n := written - b.off; n > 0 {
			if !b.last {
				n = min(n, maxBody-sent)
			}
			k, err := b.w.spool.ReadAt(p[:min(n, int64(len(p)))], b.off)
			b.off += int64(k)
			b.carried.Store(b.off - b.start)
			if k == 0 && err != nil {
				return 0, fmt.Errorf("sluice: spool: %w", err)
			}
			return k, nil
		}
		wait := ackInterval - time.Since(b.began)
		if b.last || closing || wait <= 0 {
			return 0, io.EOF
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return 0, b.ctx.Err()
		}
		t.Stop()
	}
}

// Close is called by the transport when it is done with the body.
func (b *spoolBody) Close() error {
	b.abandon()
	return nil
}

// abandon ends a Read that is waiting, and every later one.
func (b *spoolBody) abandon() {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	if !b.abandoned {
		b.abandoned = true
		b.w.signal()
	}
}

// sent is how many bytes the body has handed to the transport.
func (b *spoolBody) sent() int64 { return b.carried.Load() }
