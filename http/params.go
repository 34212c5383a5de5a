package http

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice"
)

// errBadRequest is wrapped by every error that parsing a request reports; it maps to 400.
var errBadRequest = errors.New("bad request")

// parseNumber parses an unsigned decimal integer below 2^63: no sign, fraction, hex,
// spaces or overflow, so that a header means exactly one thing.
func parseNumber(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("%w: %q is not an unsigned decimal integer below 2^63", errBadRequest, s)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not an unsigned decimal integer below 2^63", errBadRequest, s)
		}
		n = n*10 + uint64(c-'0')
	}
	if n >= 1<<63 {
		return 0, fmt.Errorf("%w: %q is not below 2^63", errBadRequest, s)
	}
	return int64(n), nil
}

// byteRange is one range of a Range header: bytes [start, end), or the last suffix bytes.
// end is -1 when open; suffix is -1 unless the form was bytes=-N.
type byteRange struct {
	start, end, suffix int64
}

// parseRange parses a single-range "bytes=N-", "bytes=N-M" or "bytes=-N" header.
func parseRange(s string) (byteRange, error) {
	spec, ok := strings.CutPrefix(s, "bytes=")
	first, last, dash := strings.Cut(spec, "-")
	if !ok || !dash || strings.Contains(spec, ",") {
		return byteRange{}, fmt.Errorf("%w: Range %q: want bytes=N-, bytes=N-M or bytes=-N", errBadRequest, s)
	}
	if first == "" {
		n, err := parseNumber(last)
		if err != nil {
			return byteRange{}, fmt.Errorf("Range: %w", err)
		}
		return byteRange{start: 0, end: -1, suffix: n}, nil
	}
	r := byteRange{end: -1, suffix: -1}
	var err error
	if r.start, err = parseNumber(first); err != nil {
		return byteRange{}, fmt.Errorf("Range: %w", err)
	}
	if last != "" {
		m, err := parseNumber(last)
		if err != nil {
			return byteRange{}, fmt.Errorf("Range: %w", err)
		}
		if m < r.start {
			return byteRange{}, fmt.Errorf("%w: Range %q ends before it starts", errBadRequest, s)
		}
		r.end = m + 1
		if m == math.MaxInt64 {
			r.end = -1 // beyond any stream: open, rather than overflowing
		}
	}
	return r, nil
}

// headerValue returns header name's value and whether the request has the header at all,
// so that an empty value is refused rather than taken for an absent header. Several values
// are joined with commas, which no number, range or flag accepts.
func headerValue(h http.Header, name string) (string, bool) {
	v, ok := h[http.CanonicalHeaderKey(name)]
	return strings.Join(v, ","), ok
}

// publishHeaders parses a publish's Stream-Offset (default 0) and Stream-Close (default
// true, else exactly "true" or "false").
func publishHeaders(r *http.Request) (off int64, closeAtEnd bool, err error) {
	if v, ok := headerValue(r.Header, "Stream-Offset"); ok {
		if off, err = parseNumber(v); err != nil {
			return 0, false, fmt.Errorf("Stream-Offset: %w", err)
		}
	}
	closeAtEnd = true
	if v, ok := headerValue(r.Header, "Stream-Close"); ok {
		if v != "true" && v != "false" {
			return 0, false, fmt.Errorf("%w: Stream-Close must be true or false, not %q", errBadRequest, v)
		}
		closeAtEnd = v == "true"
	}
	return off, closeAtEnd, nil
}

// startOffset finds where a follower starts: Last-Event-ID, then Range, then ?offset,
// else 0. It also returns the parsed Range, if the offset came from one.
func startOffset(r *http.Request) (int64, *byteRange, error) {
	if v, ok := headerValue(r.Header, "Last-Event-ID"); ok {
		n, err := parseNumber(v)
		if err != nil {
			return 0, nil, fmt.Errorf("Last-Event-ID: %w", err)
		}
		return n, nil, nil
	}
	if v, ok := headerValue(r.Header, "Range"); ok {
		br, err := parseRange(v)
		if err != nil {
			return 0, nil, err
		}
		return br.start, &br, nil
	}
	if q := r.URL.Query(); q.Has("offset") {
		n, err := parseNumber(q.Get("offset"))
		if err != nil {
			return 0, nil, fmt.Errorf("offset: %w", err)
		}
		return n, nil, nil
	}
	return 0, nil, nil
}

// parseBool parses the values the contract allows for a flag header or query.
func parseBool(name, v string, def bool) (bool, error) {
	switch v {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s must be true or false, not %q", errBadRequest, name, v)
}

// streamKey returns the key of a /streams/{key} path, checked after percent-decoding.
func streamKey(path string) (string, error) {
	key := strings.TrimPrefix(path, "/streams/")
	if err := sluice.ValidKey(key); err != nil {
		return "", fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return key, nil
}
