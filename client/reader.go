package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// errReaderClosed is returned by Read after Close.
var errReaderClosed = errors.New("sluice: read from a closed Reader")

// ReaderOptions tune a Reader. Zero values mean the defaults in brackets.
type ReaderOptions struct {
	Client                 *http.Client  // [a client with a 5s connect timeout, keepalive, no overall timeout]
	Header                 http.Header   // extra headers on every request (e.g. Request-Id)
	Offset                 int64         // where to start [0]
	NoFollow               bool          // read what is stored now, then io.EOF
	MinBackoff, MaxBackoff time.Duration // delays between reconnects, doubling with jitter [100ms, 5s]
	MaxAttempts            int           // consecutive failed connects before giving up; 0 = no limit
	// MaxRetryTime bounds the time that consecutive failed connects may go on: the
	// Reader gives up at the first failure this long after the first of them, and never
	// waits past it for a retry; 0 = no limit. A follower that must not wait forever for
	// a server that is down sets it: with MaxAttempts alone, the time depends on the
	// backoff and on how long each attempt takes to fail.
	MaxRetryTime time.Duration
	Logger       *slog.Logger // [discard]
}

// Reader follows a stream over the raw transport, counting bytes so that it knows its
// offset. The server ends a response cleanly only when the stream is closed (or, with
// NoFollow, when the reader has caught up); a response cut short (a dropped connection,
// a server shutting down or restarting) is resumed from the counted offset with
// ?offset=N, after a backoff, so the caller sees every byte once and in order.
type Reader struct {
	url    *url.URL
	safe   string
	opts   ReaderOptions
	client *http.Client
	own    bool
	log    *slog.Logger
	ctx    context.Context // cancelled by Close, which ends a blocked Read
	cancel context.CancelFunc
	off    atomic.Int64

	// Only Read uses these.
	err          error     // sticky: io.EOF, or why the Reader gave up
	failures     int       // consecutive connects that brought no byte
	failingSince time.Time // when the first of them failed
	lastErr      error     // the last failure, whose Retry-After may say how long to wait
	started      bool      // a connect was tried: the next one is a reconnect
	got          bool      // the current response brought bytes

	mu      sync.Mutex
	body    io.ReadCloser // the current response, if any
	reading bool          // Read is using body
	closed  bool
}

// NewReader follows the stream at url from opts.Offset, resuming by offset after a dropped
// connection or a server restart. Read returns io.EOF only when the stream is closed and
// read to its end (or caught up, with NoFollow); an unknown stream is an error wrapping
// sluice.ErrNotFound. A bad URL is reported by the first Read.
func NewReader(rawURL string, opts ReaderOptions) *Reader {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	r := &Reader{safe: redact(rawURL), opts: opts, client: opts.Client, log: opts.Logger}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if r.client == nil {
		r.client, r.own = newClient(), true
	}
	if r.log == nil {
		r.log = discardLogger
	}
	r.log = r.log.With("url", r.safe)
	r.off.Store(opts.Offset)
	if err := checkURL(rawURL); err != nil {
		r.err = err
	} else {
		r.url, _ = url.Parse(rawURL)
	}
	return r
}

// Offset returns the offset of the next byte Read will return.
func (r *Reader) Offset() int64 { return r.off.Load() }

// Read reads the stream's next bytes, waiting for them while the stream is open and
// reconnecting as often as needed (up to MaxAttempts failures in a row).
func (r *Reader) Read(p []byte) (int, error) {
	for r.err == nil {
		body, err := r.current()
		if err != nil {
			r.fail(err)
			continue
		}
		n, err := body.Read(p)
		r.off.Add(int64(n))
		if n > 0 {
			r.failures, r.got, r.lastErr = 0, true, nil
		}
		r.mu.Lock()
		r.reading = false
		if r.closed && err == nil {
			err = errReaderClosed
		}
		r.mu.Unlock()
		if err != nil {
			r.drop(err)
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, r.err
}

// current returns the current response body, connecting (after a backoff, if this is a
// reconnect) when there is none. It marks the body as being read.
func (r *Reader) current() (io.ReadCloser, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errReaderClosed
	}
	if r.body != nil {
		r.reading = true
		r.mu.Unlock()
		return r.body, nil
	}
	r.mu.Unlock()
	if r.started && !backoff.Sleep(r.ctx, r.delay()) {
		return nil, errReaderClosed
	}
	r.started = true
	body, err := r.connect()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		body.Close()
		return nil, errReaderClosed
	}
	r.body, r.reading, r.got = body, true, false
	return body, nil
}

// delay is the wait before a reconnect: the backoff, or what the last failure's
// Retry-After asks, cut short so as not to wait past MaxRetryTime.
func (r *Reader) delay() time.Duration {
	d := retryDelay(r.lastErr, backoff.Delay(r.opts.MinBackoff, r.opts.MaxBackoff, max(1, r.failures)-1))
	if r.opts.MaxRetryTime > 0 && r.failures > 0 {
		d = max(0, min(d, time.Until(r.failingSince.Add(r.opts.MaxRetryTime))))
	}
	return d
}

// connect asks for the stream from the current offset.
func (r *Reader) connect() (io.ReadCloser, error) {
	off := r.off.Load()
	u := *r.url
	q := u.Query()
	q.Set("offset", strconv.FormatInt(off, 10))
	if r.opts.NoFollow {
		q.Set("follow", "false")
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	setHeaders(req, r.opts.Header)
	// These would take precedence over ?offset, and the Reader's count would be wrong.
	req.Header.Del("Range")
	req.Header.Del("Last-Event-ID")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, redactErr(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if so := resp.Header.Get("Stream-Offset"); so != "" && so != strconv.FormatInt(off, 10) {
			resp.Body.Close()
			return nil, &conflict{msg: fmt.Sprintf("GET %s: asked for offset %d, got Stream-Offset %s", r.safe, off, so)}
		}
		return resp.Body, nil
	case http.StatusNoContent:
		resp.Body.Close()
		return nil, io.EOF // the stream is closed, and off is its length
	default:
		return nil, responseError(resp)
	}
}

// fail handles a connect that brought no response body: the end, a permanent error, a
// Close, too many failures, or else one more failure to retry after a backoff.
func (r *Reader) fail(err error) {
	switch {
	case err == io.EOF, errors.Is(err, errReaderClosed), r.ctx.Err() != nil:
		r.finish(err)
		return
	case permanent(err):
		r.finish(err)
		return
	}
	r.failed(err)
}

// failed counts a connect that brought no byte, giving up after MaxAttempts in a row,
// or once they have gone on for MaxRetryTime.
func (r *Reader) failed(err error) {
	r.failures++
	r.lastErr = err
	if r.failures == 1 {
		r.failingSince = time.Now()
	}
	if r.opts.MaxAttempts > 0 && r.failures >= r.opts.MaxAttempts {
		r.finish(fmt.Errorf("giving up after %d failed attempts: %w", r.failures, err))
		return
	}
	if d := r.opts.MaxRetryTime; d > 0 && time.Since(r.failingSince) >= d {
		r.finish(fmt.Errorf("giving up after %d failed attempts in %v: %w", r.failures, d, err))
		return
	}
	r.log.Warn("connection failed; retrying", "offset", r.off.Load(), "attempt", r.failures, "err", err)
}

// drop ends the current response after body.Read returned err. A clean end means the
// stream is closed (or, with NoFollow, caught up); anything else is a cut to resume from.
func (r *Reader) drop(err error) {
	r.mu.Lock()
	body := r.body
	r.body, r.reading = nil, false
	closed := r.closed
	r.mu.Unlock()
	if body != nil {
		body.Close()
	}
	switch {
	case closed || r.ctx.Err() != nil:
		r.finish(errReaderClosed)
	case err == io.EOF:
		r.finish(io.EOF)
	case !r.got:
		r.failed(redactErr(err))
	default:
		r.log.Info("connection lost; resuming", "offset", r.off.Load(), "err", redactErr(err))
	}
}

// finish makes err the answer to every later Read.
func (r *Reader) finish(err error) {
	r.err = err
	if err == io.EOF {
		r.log.Debug("stream read to its end", "offset", r.off.Load())
	}
}

// Close ends the Reader: a blocked Read returns at once with an error, and the
// connection is released. It is safe to call from another goroutine than Read's.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var body io.ReadCloser
	if !r.reading {
		body, r.body = r.body, nil // else Read closes it when the cancel wakes it
	}
	r.mu.Unlock()
	r.cancel()
	if body != nil {
		body.Close()
	}
	if r.own {
		r.client.CloseIdleConnections()
	}
	return nil
}
