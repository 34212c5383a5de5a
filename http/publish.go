package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// bodyPool holds publish buffers, larger than a follower's so that a fast producer costs
// fewer reads and writes. A publish takes one only for a read of bytes already waiting
// (readBody), so that a slow or idle producer does not pin 256 KiB.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// smallBody is the size of the buffer a publish reads into while its producer is slow.
const smallBody = 4 << 10

// errDraining is the cause of a publish cut short by a shutdown.
var errDraining = errors.New("server is shutting down")

// fail answers err with its status and a one-line reason; server faults are logged.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, sluice.ErrInvalidKey):
		code = http.StatusBadRequest
	case errors.Is(err, sluice.ErrUnauthorized):
		code = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	case errors.Is(err, sluice.ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, sluice.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, sluice.ErrGap), errors.Is(err, sluice.ErrMismatch), errors.Is(err, sluice.ErrClosed),
		errors.Is(err, sluice.ErrContentType), errors.Is(err, sluice.ErrConfigMismatch):
		code = http.StatusConflict
		w.Header().Set("Stream-Conflict", conflictName(err))
		s.metrics.conflicts.Inc()
	case errors.Is(err, sluice.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, sluice.ErrTooManyStreams), errors.Is(err, fanout.ErrTooManyFollowers), errors.Is(err, errDraining):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	}
	if code == http.StatusRequestEntityTooLarge || code == http.StatusServiceUnavailable {
		s.metrics.refused.WithLabelValues(strconv.Itoa(code)).Inc()
	}
	if code >= 500 && !errors.Is(err, errDraining) && !errors.Is(err, fanout.ErrTooManyFollowers) && !errors.Is(err, sluice.ErrTooManyStreams) {
		logger(r.Context()).Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, err.Error(), code)
}

// conflictName names the cause of a 409 in its Stream-Conflict header: gap, mismatch or
// closed. Clients branch on it; the reason in the body is for people, and its wording may
// change.
func conflictName(err error) string {
	switch {
	case errors.Is(err, sluice.ErrGap):
		return "gap"
	case errors.Is(err, sluice.ErrMismatch):
		return "mismatch"
	case errors.Is(err, sluice.ErrClosed):
		return "closed"
	case errors.Is(err, sluice.ErrContentType):
		return "content-type"
	}
	return ""
}

// setInfo sets the Stream-* headers every publish and metadata response carries.
func setInfo(h http.Header, info sluice.Info) {
	h.Set("Stream-Length", strconv.FormatInt(info.Length, 10))
	h.Set("Stream-Closed", strconv.FormatBool(info.Closed))
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, key string) {
	_, created, err := s.store.Create(r.Context(), key, sluice.CreateOptions{})
	if err != nil && !errors.Is(err, sluice.ErrConfigMismatch) { // busl: any stream of key will do
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/streams/"+key)
	if created {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// createRandom creates a stream under a new random key of 128 bits. With StreamTokens,
// the answer carries a publish token and a read token for that stream alone, so that a
// CI system hands a job exactly its own capability.
func (s *Server) createRandom(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 16)
	rand.Read(b)
	key := hex.EncodeToString(b)
	if _, _, err := s.store.Create(r.Context(), key, sluice.CreateOptions{}); err != nil {
		s.fail(w, r, err)
		return
	}
	body := map[string]string{"key": key, "url": s.scheme(r) + "://" + r.Host + "/streams/" + key}
	if s.cfg.StreamTokens != nil {
		var err error
		if body["publish_token"], body["read_token"], err = s.cfg.StreamTokens(key); err != nil {
			s.fail(w, r, fmt.Errorf("stream tokens: %w", err))
			return
		}
	}
	w.Header().Set("Location", "/streams/"+key)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(body)
}

// head serves HEAD /streams/{key}: the stream's length and state, for a producer that
// resumes; for a closed stream, what a GET of it would get.
func (s *Server) head(w http.ResponseWriter, r *http.Request, key string) {
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info := st.Info()
	st.Release()
	setInfo(w.Header(), info)
	if info.Closed && wholeRead(r) {
		// The headers the same GET would get, compressed or not (compress.go), so that a
		// client or a cache may ask before it downloads; a GET may still be answered
		// uncompressed if every MaxCompressed place is taken when it comes.
		w.Header().Add("Vary", "Accept-Encoding")
		if c := negotiate(r.Header); c != nil && compressible(info) && s.cfg.MaxCompressed > 0 {
			setFileHeaders(w.Header(), info, 0)
			s.serveCompressed(w, r, nil, info, c) // HEAD: headers only, no error
			return
		}
	}
	if info.Closed {
		w.Header().Set("Content-Length", strconv.FormatInt(info.Length, 10))
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, key string) {
	purge, err := parseBool("purge", r.URL.Query().Get("purge"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if purge {
		if err := s.store.Purge(r.Context(), key); err != nil {
			s.fail(w, r, err)
			return
		}
		s.fan.End(key) // at once, whatever they wait for
		w.WriteHeader(http.StatusNoContent)
		return
	}
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer st.Release()
	info, err := st.Close(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	setInfo(w.Header(), info)
	w.WriteHeader(http.StatusOK)
}

// publish appends the request body to the stream as it arrives, so followers see each
// byte long before the body ends. See docs/protocol.md, "Publishing".
func (s *Server) publish(w http.ResponseWriter, r *http.Request, key string) {
	off, closeAtEnd, err := publishHeaders(r)
	if err != nil {
		// Every response to a publish carries the stream's Stream-* headers, if it exists.
		if st, err := s.store.Open(r.Context(), key); err == nil {
			setInfo(w.Header(), st.Info())
			st.Release()
		}
		s.fail(w, r, err)
		return
	}
	st, err := s.openForPublish(r.Context(), key, off)
	if err != nil {
		setInfo(w.Header(), sluice.Info{})
		s.fail(w, r, err)
		return
	}
	defer st.Release()
	if st.Info().Config.Records() {
		setInfo(w.Header(), st.Info())
		s.fail(w, r, fmt.Errorf("publish to %s: %w: the stream holds JSON messages; append them through /v1/stream/", key, sluice.ErrContentType))
		return
	}
	// Append even an empty body once, so a gap is refused before anything is read.
	info, err := st.Append(r.Context(), off, nil)
	if err == nil {
		info, err = s.copyBody(w, r, st, off)
	}
	if err == nil && closeAtEnd {
		info, err = st.Close(r.Context())
	}
	if err != nil {
		if st.Info().Length > info.Length {
			info = st.Info()
		}
		setInfo(w.Header(), info)
		s.fail(w, r, err)
		return
	}
	setInfo(w.Header(), info)
	w.WriteHeader(http.StatusOK)
}

// openForPublish opens the stream of key, creating it if it does not exist (busl's
// producers never create first), unless the publish starts beyond 0: that would be
// refused as a gap, and must not leave an empty stream behind.
func (s *Server) openForPublish(ctx context.Context, key string, off int64) (sluice.Stream, error) {
	st, err := s.store.Open(ctx, key)
	if !errors.Is(err, sluice.ErrNotFound) {
		return st, err
	}
	if off > 0 {
		return nil, fmt.Errorf("publish to %s at %d, length 0: %w", key, off, sluice.ErrGap)
	}
	if _, _, err := s.store.Create(ctx, key, sluice.CreateOptions{}); err != nil && !errors.Is(err, sluice.ErrConfigMismatch) {
		return nil, err
	}
	return s.store.Open(ctx, key)
}

// copyBody appends the body from offset off until it ends. A body that breaks leaves every
// byte received so far stored and the stream open: errBadRequest. A shutdown stops the
// reading by moving the read deadline into the past: errDraining.
func (s *Server) copyBody(w http.ResponseWriter, r *http.Request, st sluice.Stream, off int64) (sluice.Info, error) {
	ctl := http.NewResponseController(w)
	cutShort := func() { ctl.SetReadDeadline(time.Now()) }
	stop := context.AfterFunc(s.fan.Draining(), cutShort)
	defer stop()
	small := make([]byte, smallBody)
	info := st.Info()
	for {
		// A deadline set just as the drain began must not undo the drain's.
		ctl.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if s.fan.Draining().Err() != nil {
			cutShort()
		}
		b, big, rerr := readBody(r.Body, small)
		if len(b) > 0 {
			var err error
			info, err = st.Append(r.Context(), off, b)
			if err != nil {
				putBody(big)
				return info, err
			}
			off += int64(len(b))
			s.metrics.bytesIn.Add(float64(len(b)))
		}
		putBody(big)
		switch {
		case rerr == io.EOF:
			return info, nil
		case rerr != nil && s.fan.Draining().Err() != nil:
			return info, errDraining
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			return info, fmt.Errorf("%w: publish body: no bytes for %v", errBadRequest, s.cfg.ReadTimeout)
		case rerr != nil:
			return info, fmt.Errorf("%w: publish body: %v", errBadRequest, rerr)
		}
	}
}

// readBody reads what the producer has sent. It reads into small, which is all that a
// producer holds while it pauses; when that fills, more bytes are waiting, and it reads
// them on at once into a large pooled buffer (big, for putBody), so that a fast producer
// costs one Append per read of up to 256 KiB. (Only a producer that pauses right after
// exactly 4 KiB, at the end of a chunk, waits with the large buffer.)
func readBody(body io.Reader, small []byte) (b []byte, big *[]byte, err error) {
	n, err := body.Read(small)
	if n < len(small) || err != nil {
		return small[:n], nil, err
	}
	big = bodyPool.Get().(*[]byte)
	copy(*big, small)
	m, err := body.Read((*big)[n:])
	return (*big)[:n+m], big, err
}

// putBody gives back a buffer from readBody.
func putBody(big *[]byte) {
	if big != nil {
		bodyPool.Put(big)
	}
}
