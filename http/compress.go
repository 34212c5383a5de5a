package http

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// Whole reads of closed streams (GET /streams/{key} without Range, Last-Event-ID or
// ?offset, live or archived) are answered compressed when the client accepts zstd or
// gzip: logs shrink 5-10x. Only those: a ranged read or a read from an offset stays the
// exact bytes, so that offsets and Content-Range count stored bytes, and followers of
// open streams are never compressed, since they flush every write and an encoder would
// either hold bytes back or compress nothing.

// coding is a content coding whole reads may be compressed in.
type coding struct {
	name string // its Content-Encoding token
	// tag is appended to the identity ETag: the compressed bytes are another
	// representation, so a cache or a client must not take one for the other.
	tag  string
	pool sync.Pool // of idle encoders
}

// encoder is what gzip.Writer and zstd.Encoder have in common: both are reused by Reset.
type encoder interface {
	io.WriteCloser
	Reset(w io.Writer)
}

var (
	// gzipCoding uses klauspost's level 5 (its default): about two thirds of the speed of
	// level 1 for a few percent better ratio on logs, and faster than compress/gzip.
	gzipCoding = &coding{name: "gzip", tag: "-gz", pool: sync.Pool{New: func() any {
		w, err := gzip.NewWriterLevel(io.Discard, 5)
		if err != nil {
			panic(fmt.Sprintf("gzip encoder: %v", err)) // a constant level: never
		}
		return w
	}}}
	// zstdCoding runs synchronously (concurrency 1: no goroutines, one block at a time)
	// with a 1 MiB window, so that an idle encoder is about 4 MiB rather than the tens
	// of MiB of the defaults.
	zstdCoding = &coding{name: "zstd", tag: "-zst", pool: sync.Pool{New: func() any {
		w, err := zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20),
			zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			panic(fmt.Sprintf("zstd encoder: %v", err)) // constant options: never
		}
		return w
	}}}
)

// get returns an encoder of c writing to w.
func (c *coding) get(w io.Writer) encoder {
	e := c.pool.Get().(encoder)
	e.Reset(w)
	return e
}

// put gives e back, writing nowhere, so that the pool does not keep a response alive.
func (c *coding) put(e encoder) {
	e.Reset(io.Discard)
	c.pool.Put(e)
}

// negotiate picks the coding of a whole read from the request's Accept-Encoding (RFC
// 9110, 12.5.3): the acceptable one of highest q, zstd on a tie; nil for identity, when
// neither is acceptable or the client ranks identity above both. An absent or empty
// header asks for identity. Nothing is refused: when even identity is excluded
// (identity;q=0, *;q=0), the response is identity all the same, which every client reads.
func negotiate(h http.Header) *coding {
	var qz, qg, qi, qany = -1, -1, -1, -1 // thousandths; -1: not named
	for _, v := range h.Values("Accept-Encoding") {
		for elem := range strings.SplitSeq(v, ",") {
			name, q, ok := parseCoding(elem)
			if !ok {
				continue
			}
			switch name {
			case "zstd":
				qz = lowest(qz, q)
			case "gzip", "x-gzip": // x-gzip: the same coding (RFC 9110, 8.4.1.3)
				qg = lowest(qg, q)
			case "identity":
				qi = lowest(qi, q)
			case "*":
				qany = lowest(qany, q)
			}
		}
	}
	// "*" stands for any coding not named.
	for _, q := range []*int{&qz, &qg, &qi} {
		if *q < 0 {
			*q = qany
		}
	}
	best, c := qz, zstdCoding
	if qg > qz {
		best, c = qg, gzipCoding
	}
	// identity, when not named, is acceptable but ranks last: "gzip;q=0.5" wants gzip.
	if best <= 0 || qi > best {
		return nil
	}
	return c
}

// lowest keeps the lower of two q-values of one coding named twice, so that a refusal
// (q=0) is never overridden.
func lowest(old, q int) int {
	if old < 0 {
		return q
	}
	return min(old, q)
}

// parseCoding parses one element of Accept-Encoding, "name[;q=x.yyy]", into the coding's
// lower-case name and its q-value in thousandths. An element with a malformed q-value
// is ignored (ok false), rather than guessed at.
func parseCoding(elem string) (name string, q int, ok bool) {
	name, params, _ := strings.Cut(elem, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", 0, false
	}
	q = 1000
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue // no other parameter is defined; ignore it
		}
		if q, ok = parseQ(strings.TrimSpace(v)); !ok {
			return "", 0, false
		}
	}
	return name, q, true
}

// parseQ parses a qvalue: "0" or "1", then at most three decimals, never above 1.
func parseQ(s string) (int, bool) {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	n := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return n, true
	}
	frac := s[1:]
	if frac[0] != '.' || len(frac) > 4 {
		return 0, false
	}
	scale := 100
	for _, c := range []byte(frac[1:]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n += int(c-'0') * scale
		scale /= 10
	}
	if n > 1000 {
		return 0, false
	}
	return n, true
}

// wholeRead reports whether a request of a closed stream asks for all of it, with no
// start offset (Last-Event-ID, Range, ?offset, even 0): only those are compressed.
func wholeRead(r *http.Request) bool {
	_, id := r.Header["Last-Event-Id"]
	_, rng := r.Header["Range"]
	return !id && !rng && !r.URL.Query().Has("offset")
}

// compression picks the coding of a whole read of a closed stream, nil for identity,
// and takes one of the MaxCompressed places: release gives it back. Beyond them, the
// read is identity, which bounds the memory encoders take whatever the number of
// downloads at once.
func (s *Server) compression(r *http.Request, info sluice.Info) (c *coding, release func()) {
	if c = negotiate(r.Header); c == nil || !compressible(info) {
		return nil, nil
	}
	select {
	case s.compressing <- struct{}{}:
		return c, func() { <-s.compressing }
	default:
		return nil, nil
	}
}

// minCompressed is the smallest stream a whole read compresses: below, the coding's
// framing would outweigh what it saves (as nginx's gzip_min_length).
const minCompressed = 1 << 10

// compressible reports whether a whole read of the closed stream in state info may be
// compressed: the same answer for a GET and a HEAD, so that they get the same headers.
func compressible(info sluice.Info) bool { return info.Length >= minCompressed }

// identityETag is the ETag of a closed stream's bytes; it changes if the key is purged
// and reused, since the version does.
func identityETag(info sluice.Info) string {
	return `"` + info.Version + "-" + strconv.FormatInt(info.Length, 10) + `"`
}

// setCompressed sets the headers of a closed stream's whole read in c, for GET and HEAD
// alike. There is no Content-Length: the body is compressed as it is sent.
func setCompressed(h http.Header, info sluice.Info, c *coding) {
	h.Set("Content-Encoding", c.name)
	tag := identityETag(info)
	h.Set("ETag", tag[:len(tag)-1]+c.tag+`"`)
}

// serveCompressed answers a whole read of a closed stream in c: the conditional
// requests on its ETag, then, for a GET, the stream's bytes from the store through a
// pooled encoder, at the reader's pace, never more than the encoder's window in memory.
// An error means the response is cut short: the caller must abort it, never end it.
func (s *Server) serveCompressed(w http.ResponseWriter, r *http.Request, st sluice.Stream, info sluice.Info, c *coding) error {
	h := w.Header()
	setCompressed(h, info, c)
	if done := checkConditions(w, r, h.Get("ETag")); done {
		return nil
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	e := c.get(w)
	defer c.put(e)
	src := &countingReader{r: io.NewSectionReader(fanout.ReaderAt{Ctx: r.Context(), Stream: st}, 0, info.Length)}
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	_, err := io.CopyBuffer(e, src, *bp) // zstd reads into its own blocks (ReadFrom)
	if err == nil && src.n != info.Length {
		err = fmt.Errorf("%w: %d of %d bytes", io.ErrUnexpectedEOF, src.n, info.Length)
		src.err = err
	}
	if err == nil {
		err = e.Close() // the last block and the trailer
	}
	if err != nil {
		if src.err != nil {
			logger(r.Context()).Warn("compressed read cut short", "err", src.err)
		}
		return fmt.Errorf("compressed read: %w", err)
	}
	return nil
}

// countingReader counts the bytes read and keeps the read error, to tell a store's
// failure from the client's.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// checkConditions answers If-Match (412) and If-None-Match (304) on etag as
// http.ServeContent does for identity reads, and reports whether it answered.
func checkConditions(w http.ResponseWriter, r *http.Request, etag string) bool {
	if im := r.Header.Get("If-Match"); im != "" && !etagMatch(im, etag, false) {
		w.WriteHeader(http.StatusPreconditionFailed)
		return true
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag, true) {
		h := w.Header()
		// As net/http does for a 304: no representation headers but the validators.
		h.Del("Content-Type")
		h.Del("Content-Encoding")
		h.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// etagMatch reports whether the entity-tag list of an If-Match or If-None-Match header
// holds etag or "*": weakly (W/ ignored) for If-None-Match, strongly for If-Match.
func etagMatch(list, etag string, weak bool) bool {
	for s := strings.TrimSpace(list); s != ""; s = strings.TrimLeft(s, " \t,") {
		if s[0] == '*' {
			return true
		}
		isWeak := strings.HasPrefix(s, "W/")
		t := strings.TrimPrefix(s, "W/")
		if len(t) < 2 || t[0] != '"' {
			return false // malformed: match nothing
		}
		end := strings.IndexByte(t[1:], '"')
		if end < 0 {
			return false
		}
		if t[:end+2] == etag && (weak || !isWeak) {
			return true
		}
		s = t[end+2:]
	}
	return false
}
