package http

// The Durable Streams protocol (github.com/durable-streams/durable-streams, PROTOCOL.md)
// at /v1/stream/{key}, on the same streams as busl's protocol at /streams/{key}: a
// stream published on one prefix is read byte for byte on the other. This file routes
// it and holds what its handlers share: offsets, cursors, headers and errors. See
// docs/protocol.md, "Durable Streams".

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// durablePrefix is where the Durable Streams protocol is served.
const durablePrefix = "/v1/stream/"

// defaultContentType is the type of a stream made with none, as the protocol says: a
// stream of busl's (Config.ContentType "") is one.
const defaultContentType = "application/octet-stream"

// contentType is the content type a stream declares to Durable Streams clients.
func contentType(c sluice.Config) string {
	if c.ContentType == "" {
		return defaultContentType
	}
	return c.ContentType
}

// mediaType is the media type of a content type, parameters aside, in lower case; a
// stream without one is application/octet-stream.
func mediaType(c sluice.Config) string {
	if mt := c.MediaType(); mt != "" {
		return mt
	}
	return defaultContentType
}

// Offsets are fixed-width strings, "%016d_%016d": the first number is always 0, the
// second the byte offset, so that they sort as they compare and mean the same byte as
// busl's offsets do. "-1" is the start; "now" the stream's length.
var offsetRE = regexp.MustCompile(`^[0-9]{1,16}_[0-9]{1,16}$`)

// formatOffset is the Durable Streams offset of byte offset n.
func formatOffset(n int64) string { return fmt.Sprintf("%016d_%016d", 0, n) }

// parseOffset parses a Durable Streams offset into a byte offset; "-1" is 0 and "now"
// is now (the length).
func parseOffset(s string, now int64) (int64, error) {
	switch s {
	case "-1":
		return 0, nil
	case "now":
		return now, nil
	}
	if !offsetRE.MatchString(s) {
		return 0, fmt.Errorf("%w: offset %q: want -1, now or an offset this server gave", errBadRequest, s)
	}
	hi, lo, _ := strings.Cut(s, "_")
	n, _ := strconv.ParseInt(lo, 10, 64)
	if h, _ := strconv.ParseInt(hi, 10, 64); h != 0 {
		return 0, fmt.Errorf("%w: offset %q is not one of this server's", errBadRequest, s)
	}
	return n, nil
}

// Cursors keep CDNs from collapsing the long-polls of different moments into one: the
// number of 20 s intervals since 2024-10-09, or, when the client's cursor is not behind
// that, a jump ahead of it, as the protocol's reference servers compute them.
var cursorEpoch = time.Date(2024, 10, 9, 0, 0, 0, 0, time.UTC)

const (
	cursorInterval = 20 * time.Second
	cursorJump     = 90 // intervals: half of an hour's jitter window
)

// nextCursor is the cursor to answer a request that carried the cursor client.
func nextCursor(client string, now time.Time) string {
	cur := int64(now.Sub(cursorEpoch) / cursorInterval)
	if c, err := strconv.ParseInt(client, 10, 64); err == nil && c >= cur {
		cur = c + cursorJump
	}
	return strconv.FormatInt(cur, 10)
}

// durable routes a request of the Durable Streams protocol.
func (s *Server) durable(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	key, err := durableKey(r.URL.Path)
	if err != nil {
		s.durableFail(w, r, err)
		return
	}
	op, ok := methodOp(r, sluice.OpPurge) // a DELETE purges
	if ok && !s.authorize(w, r, key, op) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		if wantsViewer(r) {
			s.serveViewer(w, r, key) // a browser's navigation: the web viewer
			return
		}
		s.durableRead(w, r, key)
	case http.MethodHead:
		s.durableHead(w, r, key)
	case http.MethodPut:
		s.durableCreate(w, r, key)
	case http.MethodPost:
		s.durableAppend(w, r, key)
	case http.MethodDelete:
		s.durableDelete(w, r, key)
	default:
		h.Set("Allow", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// wantsViewer reports whether a GET is a browser's navigation to the stream (Accept:
// text/html, no offset asked for), which gets the web viewer as on /streams/.
func wantsViewer(r *http.Request) bool {
	q := r.URL.Query()
	return strings.Contains(r.Header.Get("Accept"), "text/html") && !q.Has("offset") && !q.Has("live")
}

// durableKey returns the key of a /v1/stream/{key} path.
func durableKey(path string) (string, error) {
	key := strings.TrimPrefix(path, durablePrefix)
	if err := sluice.ValidKey(key); err != nil {
		return "", fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return key, nil
}

// sourceKey returns the key that a Stream-Forked-From header names: a path under
// /v1/stream/ (or /streams/, the same streams).
func sourceKey(v string) (string, error) {
	for _, p := range []string{durablePrefix, "/streams/"} {
		if k, ok := strings.CutPrefix(v, p); ok {
			if err := sluice.ValidKey(k); err != nil {
				return "", fmt.Errorf("%w: Stream-Forked-From: %w", errBadRequest, err)
			}
			return k, nil
		}
	}
	return "", fmt.Errorf("%w: Stream-Forked-From %q: want /v1/stream/{key}", errBadRequest, v)
}

// durableFail answers err with the status the protocol gives it, and the headers that
// tell a client why: a closed stream's length, a producer's expected sequence.
func (s *Server) durableFail(w http.ResponseWriter, r *http.Request, err error) {
	h := w.Header()
	var pe *sluice.ProducerError
	switch {
	case errors.Is(err, sluice.ErrGone):
		http.Error(w, err.Error(), http.StatusGone)
		return
	case errors.Is(err, sluice.ErrConfigMismatch), errors.Is(err, sluice.ErrSeqOrder):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case errors.As(err, &pe) && errors.Is(err, sluice.ErrStaleEpoch):
		h.Set("Producer-Epoch", strconv.FormatUint(pe.Epoch, 10))
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case errors.As(err, &pe) && errors.Is(err, sluice.ErrProducerSeq):
		h.Set("Producer-Expected-Seq", strconv.FormatUint(pe.Expected, 10))
		h.Set("Producer-Received-Seq", strconv.FormatUint(pe.Received, 10))
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case errors.Is(err, sluice.ErrProducerEpoch), errors.Is(err, sluice.ErrBadRecord):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case errors.Is(err, fanout.ErrTooManyFollowers):
		s.metrics.refused.WithLabelValues("503").Inc()
		h.Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.fail(w, r, err)
}

// setNext sets the headers every answer about a stream's end carries: where it ends,
// and whether it is closed (only when it is).
func setNext(h http.Header, info sluice.Info) {
	h.Set("Stream-Next-Offset", formatOffset(info.Length))
	if info.Closed {
		h.Set("Stream-Closed", "true")
	}
}

// setConfig sets the headers that tell a stream's configuration.
func setConfig(h http.Header, c sluice.Config) {
	h.Set("Content-Type", contentType(c))
	if c.TTL > 0 {
		h.Set("Stream-TTL", strconv.FormatInt(int64(c.TTL/time.Second), 10))
	}
	if !c.ExpiresAt.IsZero() {
		h.Set("Stream-Expires-At", c.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
}
