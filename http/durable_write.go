package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// numberRE is a Durable Streams number: decimal, no sign, no leading zero.
var numberRE = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// durableCreate serves PUT /v1/stream/{key}: it makes the stream, or finds the same one.
func (s *Server) durableCreate(w http.ResponseWriter, r *http.Request, key string) {
	opts, err := s.createOptions(r)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	info, created, err := s.store.Create(r.Context(), key, opts)
	switch {
	case errors.Is(err, sluice.ErrGone):
		http.Error(w, fmt.Sprintf("stream %s was deleted and is kept for its forks", key), http.StatusConflict)
		return
	case err != nil:
		s.durableFail(w, r, err)
		return
	}
	h := w.Header()
	setConfig(h, info.Config)
	setNext(h, info)
	if !created {
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Location", s.scheme(r)+"://"+r.Host+r.URL.EscapedPath())
	w.WriteHeader(http.StatusCreated)
}

// createOptions reads what a PUT asks for: the content type, a TTL or an expiry, a
// fork, closed or not, and the first bytes (JSON messages, for a JSON stream).
func (s *Server) createOptions(r *http.Request) (sluice.CreateOptions, error) {
	var opts sluice.CreateOptions
	var err error
	opts.Config.ContentType = requestContentType(r)
	if opts.Config.TTL, opts.Config.ExpiresAt, err = expiryHeaders(r.Header); err != nil {
		return opts, err
	}
	opts.Closed = strings.EqualFold(r.Header.Get("Stream-Closed"), "true")
	if err := s.resolveFork(r, &opts.Config); err != nil {
		return opts, err
	}
	if opts.Config.ContentType == "" {
		opts.Config.ContentType = defaultContentType
	}
	body, err := s.readAppend(r)
	if err != nil {
		return opts, err
	}
	if opts.Config.Records() {
		opts.Data, err = jsonRecords(body, true)
	} else {
		opts.Data = body
	}
	return opts, err
}

// requestContentType is the request's Content-Type if it is one (type/subtype), else "".
func requestContentType(r *http.Request) string {
	ct := strings.TrimSpace(r.Header.Get("Content-Type"))
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !strings.Contains(mt, "/") {
		return ""
	}
	return ct
}

// expiryHeaders reads Stream-TTL (seconds) and Stream-Expires-At (RFC 3339); a
// stream may have one or the other.
func expiryHeaders(h http.Header) (ttl time.Duration, at time.Time, err error) {
	t, hasTTL := headerValue(h, "Stream-TTL")
	e, hasAt := headerValue(h, "Stream-Expires-At")
	switch {
	case hasTTL && hasAt:
		return 0, at, fmt.Errorf("%w: Stream-TTL and Stream-Expires-At: give one or the other", errBadRequest)
	case hasTTL:
		n, err := strconv.ParseInt(t, 10, 64)
		if !numberRE.MatchString(t) || err != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, at, fmt.Errorf("%w: Stream-TTL %q: want whole seconds", errBadRequest, t)
		}
		return time.Duration(n) * time.Second, at, nil
	case hasAt:
		at, err = time.Parse(time.RFC3339Nano, e)
		if err != nil {
			return 0, at, fmt.Errorf("%w: Stream-Expires-At %q: want an RFC 3339 time", errBadRequest, e)
		}
	}
	return 0, at, nil
}

// resolveFork reads a fork's headers into c: its source, where its own bytes begin
// (Stream-Fork-Offset, by default the source's length, moved on by
// Stream-Fork-Sub-Offset bytes, or messages of a JSON stream), and what it inherits
// from the source: the content type and expiry, unless the request gives its own.
func (s *Server) resolveFork(r *http.Request, c *sluice.Config) error {
	from, isFork := headerValue(r.Header, "Stream-Forked-From")
	at, hasAt := headerValue(r.Header, "Stream-Fork-Offset")
	sub, hasSub := headerValue(r.Header, "Stream-Fork-Sub-Offset")
	if !isFork {
		if hasAt || hasSub {
			return fmt.Errorf("%w: Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From", errBadRequest)
		}
		return nil
	}
	srcKey, err := sourceKey(from)
	if err != nil {
		return err
	}
	src, err := s.store.Open(r.Context(), srcKey)
	if err != nil {
		if errors.Is(err, sluice.ErrGone) {
			return fmt.Errorf("fork source %s: %w", srcKey, sluice.ErrConfigMismatch)
		}
		return fmt.Errorf("fork source: %w", err)
	}
	defer src.Release()
	info := src.Info()
	f := &sluice.Fork{Source: srcKey, SourceVersion: info.Version, At: -1, Base: info.Length}
	if hasAt {
		if f.At, err = parseOffset(at, info.Length); err != nil || f.At > info.Length {
			return fmt.Errorf("%w: Stream-Fork-Offset %q: not an offset of the source's bytes", errBadRequest, at)
		}
		f.Base = f.At
	}
	if hasSub {
		if f.Sub, err = strconv.ParseInt(sub, 10, 64); !numberRE.MatchString(sub) || err != nil {
			return fmt.Errorf("%w: Stream-Fork-Sub-Offset %q: want a count", errBadRequest, sub)
		}
		if f.Base, err = subOffset(r.Context(), src, info, f.Base, f.Sub); err != nil {
			return err
		}
	}
	if c.ContentType != "" && mediaType(*c) != mediaType(info.Config) {
		return fmt.Errorf("fork of %s: %w", srcKey, sluice.ErrConfigMismatch)
	}
	if c.ContentType == "" {
		c.ContentType = contentType(info.Config)
	}
	if c.TTL == 0 && c.ExpiresAt.IsZero() {
		c.TTL, c.ExpiresAt = info.Config.TTL, info.Config.ExpiresAt
	}
	c.Fork = f
	return nil
}

// subOffset is where a fork asked for at off with a sub-offset of n begins: n bytes
// further, or n messages of a JSON stream, which the source must have.
func subOffset(ctx context.Context, src sluice.Stream, info sluice.Info, off, n int64) (int64, error) {
	if !info.Config.Records() {
		if off+n > info.Length {
			return 0, fmt.Errorf("%w: Stream-Fork-Sub-Offset %d: the source has %d bytes past the fork offset", errBadRequest, n, info.Length-off)
		}
		return off + n, nil
	}
	buf := make([]byte, 32<<10)
	for ; n > 0; n-- {
		end, err := recordEnd(ctx, src, off, info.Length, buf)
		if err != nil {
			return 0, err
		}
		if end <= off {
			return 0, fmt.Errorf("%w: Stream-Fork-Sub-Offset: the source has fewer messages past the fork offset", errBadRequest)
		}
		off = end
	}
	return off, nil
}

// recordEnd returns the offset just after the JSON record that starts at off, or off
// when there is none before length.
func recordEnd(ctx context.Context, st sluice.Stream, off, length int64, buf []byte) (int64, error) {
	for at := off; at < length; {
		b, _, _, err := st.Read(ctx, buf, at)
		if err != nil {
			return 0, err
		}
		if len(b) == 0 {
			break
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return at + int64(i) + 1, nil
		}
		at += int64(len(b))
	}
	return off, nil
}

// readAppend reads a request's body whole, up to the largest append allowed
// (MaxAppend, 413 beyond): an append of the Durable Streams protocol is stored in one
// step, all or nothing.
func (s *Server) readAppend(r *http.Request) ([]byte, error) {
	if r.ContentLength > s.cfg.MaxAppend {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", sluice.ErrTooLarge, r.ContentLength, s.cfg.MaxAppend)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxAppend+1))
	if err != nil {
		return nil, fmt.Errorf("%w: request body: %v", errBadRequest, err)
	}
	if int64(len(b)) > s.cfg.MaxAppend {
		return nil, fmt.Errorf("%w: more than %d bytes", sluice.ErrTooLarge, s.cfg.MaxAppend)
	}
	return b, nil
}

// jsonRecords turns the body of an append to a JSON stream into records: each element
// of a top-level array is a message, any other value is one. An empty array adds
// nothing, which only a create allows.
func jsonRecords(body []byte, create bool) ([]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var vals []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		if err := json.Unmarshal(body, &vals); err != nil {
			return nil, fmt.Errorf("%w: %v", sluice.ErrBadRecord, err)
		}
		if len(vals) == 0 && !create {
			return nil, fmt.Errorf("%w: an empty array appends nothing", errBadRequest)
		}
	} else {
		if !json.Valid(body) {
			return nil, fmt.Errorf("%w: the body is not JSON", sluice.ErrBadRecord)
		}
		vals = []json.RawMessage{body}
	}
	var out []byte
	for _, v := range vals {
		var err error
		if out, err = sluice.AppendRecord(out, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// durableAppend serves POST /v1/stream/{key}: it appends the body, in one step, and
// closes the stream with it when Stream-Closed says so.
func (s *Server) durableAppend(w http.ResponseWriter, r *http.Request, key string) {
	st, err := s.store.Open(r.Context(), key)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	defer st.Release()
	wr, err := s.parseWrite(r, st.Info())
	if err != nil {
		if errors.Is(err, sluice.ErrClosed) {
			setNext(w.Header(), st.Info())
		}
		s.durableFail(w, r, err)
		return
	}
	done, err := st.Write(r.Context(), wr)
	h := w.Header()
	if err != nil {
		if errors.Is(err, sluice.ErrClosed) {
			setNext(h, done.Info)
		}
		s.durableFail(w, r, err)
		return
	}
	s.metrics.bytesIn.Add(float64(len(wr.Data)))
	setNext(h, done.Info)
	if wr.Producer == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h.Set("Producer-Epoch", strconv.FormatUint(done.Producer.Epoch, 10))
	h.Set("Producer-Seq", strconv.FormatUint(done.Producer.Seq, 10))
	if done.Duplicate || len(wr.Data) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// parseWrite reads what a POST asks to append, as the protocol orders its checks:
// producer headers, the body (a close alone, or bytes), a closed stream, the content
// type, JSON messages.
func (s *Server) parseWrite(r *http.Request, info sluice.Info) (sluice.Write, error) {
	var wr sluice.Write
	var err error
	if wr.Producer, err = producerHeaders(r.Header); err != nil {
		return wr, err
	}
	wr.Seq = r.Header.Get("Stream-Seq")
	wr.Close = strings.EqualFold(r.Header.Get("Stream-Closed"), "true")
	body, err := s.readAppend(r)
	if err != nil {
		return wr, err
	}
	switch {
	case len(body) == 0 && wr.Close:
		return wr, nil // a close alone: its content type does not matter
	case len(body) == 0:
		return wr, fmt.Errorf("%w: an append needs a body (or Stream-Closed: true)", errBadRequest)
	case info.Closed && wr.Producer == nil:
		return wr, fmt.Errorf("append: %w", sluice.ErrClosed)
	case info.Closed:
		wr.Data = body // the store tells the retry of a closing write from another
		return wr, nil
	}
	ct := requestContentType(r)
	if ct == "" {
		return wr, fmt.Errorf("%w: an append needs a Content-Type", errBadRequest)
	}
	if want := mediaType(info.Config); mediaType(sluice.Config{ContentType: ct}) != want {
		return wr, fmt.Errorf("append of %s to a stream of %s: %w", ct, want, sluice.ErrContentType)
	}
	if info.Config.Records() {
		body, err = jsonRecords(body, false)
	}
	wr.Data = body
	return wr, err
}

// producerHeaders reads Producer-Id, Producer-Epoch and Producer-Seq: all of them, or
// none.
func producerHeaders(h http.Header) (*sluice.Producer, error) {
	id, hasID := headerValue(h, "Producer-Id")
	epoch, hasEpoch := headerValue(h, "Producer-Epoch")
	seq, hasSeq := headerValue(h, "Producer-Seq")
	if !hasID && !hasEpoch && !hasSeq {
		return nil, nil
	}
	if !hasID || !hasEpoch || !hasSeq || id == "" {
		return nil, fmt.Errorf("%w: Producer-Id, Producer-Epoch and Producer-Seq go together, the id not empty", errBadRequest)
	}
	p := &sluice.Producer{ID: id}
	var err error
	if p.Epoch, err = producerNumber("Producer-Epoch", epoch); err != nil {
		return nil, err
	}
	if p.Seq, err = producerNumber("Producer-Seq", seq); err != nil {
		return nil, err
	}
	return p, nil
}

// producerNumber parses a producer's epoch or sequence number: decimal, below 2^53 (as
// JavaScript clients count).
func producerNumber(name, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strings.TrimLeft(v, "0123456789") != "" || n >= 1<<53 {
		return 0, fmt.Errorf("%w: %s %q: want a whole number below 2^53", errBadRequest, name, v)
	}
	return n, nil
}

// durableDelete serves DELETE /v1/stream/{key}: the stream goes for good, or, while
// forks read it, is soft-deleted (410 from then on).
func (s *Server) durableDelete(w http.ResponseWriter, r *http.Request, key string) {
	if err := s.store.Purge(r.Context(), key); err != nil {
		s.durableFail(w, r, err)
		return
	}
	s.fan.End(key)
	w.WriteHeader(http.StatusNoContent)
}
