package http

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// Tests of docs/protocol.md, "Raw bytes": whole reads of closed and archived streams
// compressed as Accept-Encoding asks; ranges, offsets and followers left exact.

// TestNegotiate proves the choice of a coding from Accept-Encoding: q-values honoured,
// zstd on a tie, refusals (q=0) respected, "*" for codings not named, identity ranked
// above both codings only when the client says so, malformed q-values ignored.
func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		values []string // nil: no header
		want   string
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"gzip"}, "gzip"},
		{[]string{"zstd"}, "zstd"},
		{[]string{"gzip, zstd"}, "zstd"},
		{[]string{"deflate, gzip, br, zstd"}, "zstd"}, // curl --compressed
		{[]string{"gzip, deflate, br, zstd"}, "zstd"}, // browsers
		{[]string{"gzip, deflate, br"}, "gzip"},
		{[]string{"br, deflate"}, ""},
		{[]string{"GZip;Q=0.5"}, "gzip"},
		{[]string{"x-gzip"}, "gzip"},
		{[]string{" gzip ; q=0.5 , zstd ; q=0.25 "}, "gzip"},
		{[]string{"zstd;q=0.5, gzip"}, "gzip"},
		{[]string{"gzip;q=0.9, zstd;q=0.8"}, "gzip"},
		{[]string{"gzip;q=0.8, zstd;q=0.800"}, "zstd"},
		{[]string{"gzip;q=0.4", "zstd;q=0.3"}, "gzip"}, // two header lines
		{[]string{"gzip;q=0, zstd;q=0"}, ""},
		{[]string{"gzip;q=0.000, zstd;q=0."}, ""},
		{[]string{"gzip;q=0, gzip"}, ""}, // named twice: the refusal stands
		{[]string{"*"}, "zstd"},
		{[]string{"*;q=0"}, ""},
		{[]string{"*, zstd;q=0"}, "gzip"},
		{[]string{"*;q=0, gzip"}, "gzip"},
		{[]string{"identity;q=0"}, ""},
		{[]string{"gzip, identity;q=0"}, "gzip"},
		{[]string{"identity;q=0, *;q=0"}, ""},
		{[]string{"identity, gzip;q=0.5"}, ""}, // identity preferred
		{[]string{"identity;q=0.5, gzip"}, "gzip"},
		{[]string{"identity, gzip"}, "gzip"}, // a tie: compress
		{[]string{"gzip;q=0.5"}, "gzip"},     // identity not named ranks last
		{[]string{"gzip;q=1.001"}, ""},
		{[]string{"gzip;q=2"}, ""},
		{[]string{"gzip;q=0.0001"}, ""},
		{[]string{"gzip;q=abc, zstd;q=0.1"}, "zstd"},
		{[]string{"gzip;q="}, ""},
		{[]string{"gzip;q=-1"}, ""},
		{[]string{"gzip;level=9"}, "gzip"},
		{[]string{",,gzip,,"}, "gzip"},
		{[]string{";q=1"}, ""},
	} {
		h := http.Header{}
		if tc.values != nil {
			h["Accept-Encoding"] = tc.values
		}
		got := ""
		if c := negotiate(h); c != nil {
			got = c.name
		}
		if got != tc.want {
			t.Errorf("Accept-Encoding %q: %q, want %q", tc.values, got, tc.want)
		}
	}
}

// TestETagMatch proves the entity-tag lists of If-None-Match (weak comparison) and
// If-Match (strong).
func TestETagMatch(t *testing.T) {
	const tag = `"v1-42-gz"`
	for _, tc := range []struct {
		list        string
		weak, match bool
	}{
		{`"v1-42-gz"`, true, true},
		{`W/"v1-42-gz"`, true, true},
		{`W/"v1-42-gz"`, false, false},
		{`"v1-42-gz"`, false, true},
		{`"v1-42"`, true, false},
		{`"v1-42-zst"`, true, false},
		{`"a", "b,c",  "v1-42-gz"`, true, true},
		{`"a",W/"v1-42-gz"`, true, true},
		{`*`, true, true},
		{`*`, false, true},
		{`v1-42-gz`, true, false},
		{`"v1-42-gz`, true, false},
		{``, true, false},
	} {
		if got := etagMatch(tc.list, tag, tc.weak); got != tc.match {
			t.Errorf("etagMatch(%q, weak %v) = %v, want %v", tc.list, tc.weak, got, tc.match)
		}
	}
}

// logReader reads as n bytes of a build log holding what logs hold: timestamps, progress
// lines redrawn with '\r', ANSI colours, multi-byte characters, NULs, invalid UTF-8 and
// runs of binary. The same seed gives the same bytes.
type logReader struct {
	r    *rand.Rand
	left int
	line []byte
	i    int
	ms   int // the clock of the log's timestamps
}

func newLogReader(n int, seed uint64) *logReader {
	return &logReader{r: rand.New(rand.NewPCG(seed, 0x9e)), left: n}
}

func (g *logReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	for g.i == len(g.line) {
		g.line, g.i = g.next(g.line[:0]), 0
	}
	n := copy(p[:min(len(p), g.left)], g.line[g.i:])
	g.i += n
	g.left -= n
	return n, nil
}

var logWords = []string{"compile", "link", "vet", "cache", "download", "module", "github.com/sluicehq/sluice",
	"internal/fanout", "ok", "PASS", "FAIL", "warning:", "deprecated", "layer", "sha256:", "retrying", "✓", "中文", "é€"}

// next appends one line of the log to b.
func (g *logReader) next(b []byte) []byte {
	r := g.r
	g.ms += r.IntN(40)
	b = fmt.Appendf(b, "2026-06-03T%02d:%02d:%02d.%03dZ ", g.ms/3600000%24, g.ms/60000%60, g.ms/1000%60, g.ms%1000)
	switch k := r.IntN(100); {
	case k < 40:
		b = fmt.Appendf(b, "[step %d/40] go test ./%s/... ok %d.%03ds\n", r.IntN(40), logWords[r.IntN(len(logWords))], r.IntN(90), r.IntN(1000))
	case k < 55:
		for p := 0; p <= 100; p += 5 + r.IntN(30) {
			b = fmt.Appendf(b, "Downloading layer %08x: %3d%%\r", r.Uint32(), p)
		}
		b = append(b, "done\n"...)
	case k < 70:
		b = fmt.Appendf(b, "\x1b[%dm%s\x1b[0m %s (0.%02ds)\n", 31+r.IntN(3), logWords[r.IntN(len(logWords))], logWords[r.IntN(len(logWords))], r.IntN(100))
	case k < 80:
		b = append(b, "tool output: NUL\x00\x00 invalid \xff\xfe lone \x80 cut \xc3 end\n"...)
	case k < 81:
		for range 8 + r.IntN(120) {
			b = append(b, byte(r.Uint32()))
		}
	default:
		for range 3 + r.IntN(12) {
			b = append(append(b, logWords[r.IntN(len(logWords))]...), ' ')
		}
		b = append(b, '\n')
	}
	return b
}

// logContent returns n bytes of logReader's log.
func logContent(t testing.TB, n int, seed uint64) []byte {
	t.Helper()
	b, err := io.ReadAll(newLogReader(n, seed))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zGet sends a GET or HEAD with Accept-Encoding ae (set, so that Go's transport neither
// adds gzip nor decodes) and more headers, and returns the response and its raw body.
func zGet(t testing.TB, method, url, ae string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", ae)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s (Accept-Encoding %q): %v", method, url, ae, err)
	}
	return resp, b
}

// zDecode decodes b of Content-Encoding enc: gzip with the standard library (not the
// server's encoder's package), zstd with klauspost's decoder.
func zDecode(t testing.TB, enc string, b []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	switch enc {
	case "gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(b)); err == nil {
			out, err = io.ReadAll(zr)
		}
	case "zstd":
		var zr *zstd.Decoder
		if zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err == nil {
			out, err = zr.DecodeAll(b, nil)
			zr.Close()
		}
	default:
		t.Fatalf("Content-Encoding %q", enc)
	}
	if err != nil {
		t.Fatalf("decoding %s: %v", enc, err)
	}
	return out
}

// checkCompressedReads asserts what whole reads of the closed stream of key, holding
// content, answer for each coding: the coding's headers, bytes that decode exactly to
// content and are fewer, an ETag of its own for which If-None-Match gets 304, and a HEAD
// with the same headers.
func checkCompressedReads(t *testing.T, ts *testServer, key string, content []byte) {
	t.Helper()
	u := ts.streamURL(key)
	plain, _ := zGet(t, http.MethodGet, u, "identity", "Range", "bytes=0-0")
	idTag := plain.Header.Get("ETag")
	tags := map[string]string{idTag: "identity"}
	for _, enc := range []string{"gzip", "zstd"} {
		resp, body := zGet(t, http.MethodGet, u, enc)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != enc {
			t.Fatalf("%s: %s, Content-Encoding %q", enc, resp.Status, resp.Header.Get("Content-Encoding"))
		}
		subWantFollowHeaders(t, resp.Header, 0, int64(len(content)), true)
		subWantHeaders(t, resp.Header, "Vary", "Accept-Encoding", "Content-Type", "text/plain; charset=utf-8",
			"Content-Length", "", "Accept-Ranges", "")
		if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("%s: Content-Length %d, Transfer-Encoding %q; want streamed, chunked", enc, resp.ContentLength, resp.TransferEncoding)
		}
		subEqual(t, enc+" decoded", zDecode(t, enc, body), content)
		t.Logf("%s: %d bytes for %d (%.1fx)", enc, len(body), len(content), float64(len(content))/float64(len(body)))
		if len(body) >= len(content)/2 {
			t.Errorf("%s: %d bytes for a log of %d; want fewer than half", enc, len(body), len(content))
		}
		tag := resp.Header.Get("ETag")
		if other, ok := tags[tag]; ok || !strings.HasPrefix(tag, `"`) {
			t.Errorf("%s: ETag %q, the same as %s's", enc, tag, other)
		}
		tags[tag] = enc

		for _, inm := range []string{tag, "W/" + tag, `"other", ` + tag, "*"} {
			nm, b := zGet(t, http.MethodGet, u, enc, "If-None-Match", inm)
			if nm.StatusCode != http.StatusNotModified || len(b) != 0 || nm.Header.Get("ETag") != tag {
				t.Errorf("%s, If-None-Match %s: %s, ETag %q, %d bytes; want 304 with the ETag", enc, inm, nm.Status, nm.Header.Get("ETag"), len(b))
			}
		}
		// The identity's ETag names other bytes.
		if other, _ := zGet(t, http.MethodGet, u, enc, "If-None-Match", idTag); other.StatusCode != 200 {
			t.Errorf("%s, If-None-Match of the identity ETag: %s, want 200", enc, other.Status)
		}
		if pf, _ := zGet(t, http.MethodGet, u, enc, "If-Match", idTag); pf.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("%s, If-Match of the identity ETag: %s, want 412", enc, pf.Status)
		}

		head, b := zGet(t, http.MethodHead, u, enc)
		for _, name := range []string{"Content-Encoding", "ETag", "Vary", "Content-Type", "Content-Length", "Stream-Length", "Stream-Closed", "Stream-Offset"} {
			if head.Header.Get(name) != resp.Header.Get(name) {
				t.Errorf("%s HEAD: %s %q, its GET's %q", enc, name, head.Header.Get(name), resp.Header.Get(name))
			}
		}
		if head.StatusCode != 200 || len(b) != 0 {
			t.Errorf("%s HEAD: %s with %d bytes", enc, head.Status, len(b))
		}
	}
}

// TestCompressedWholeRead proves that a whole read of a closed stream is compressed in
// zstd or gzip as Accept-Encoding asks, decodes to the stream's bytes exactly (awkward
// ones: '\r', NUL, invalid UTF-8, binary), is much smaller for a log, and has an ETag of
// its own per coding, for which If-None-Match gets 304; HEAD gets the GET's headers.
func TestCompressedWholeRead(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	content := logContent(t, 3<<20, 1)
	subPublish(t, ts, "build/log", 0, content, true)
	checkCompressedReads(t, ts, "build/log", content)

	// Identity still answers as a file, with its own ETag and 304.
	resp, body := zGet(t, http.MethodGet, ts.streamURL("build/log"), "identity")
	subWantHeaders(t, resp.Header, "Content-Encoding", "", "Content-Length", strconv.Itoa(len(content)), "Vary", "Accept-Encoding")
	subEqual(t, "identity", body, content)
	if nm, _ := zGet(t, http.MethodGet, ts.streamURL("build/log"), "identity", "If-None-Match", resp.Header.Get("ETag")); nm.StatusCode != http.StatusNotModified {
		t.Errorf("identity, If-None-Match: %s, want 304", nm.Status)
	}
}

// TestCompressedArchivedRead proves the same of an archived stream whose live copy is
// removed: its whole reads, from the archive, are compressed alike.
func TestCompressedArchivedRead(t *testing.T) {
	ar, err := file.OpenArchive(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second, Archive: ar})
	content := logContent(t, 3<<20, 2)
	subPublish(t, ts, "builds/7", 0, content, true)
	zArchive(t, ts.store, ar, "builds/7", content)
	checkCompressedReads(t, ts, "builds/7", content)
}

// zArchive archives the closed stream of key as the Archiver would, then removes its
// live copy, so that reads go to the archive.
func zArchive(t *testing.T, store *file.Store, ar *file.Archive, key string, content []byte) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	version := st.Info().Version
	st.Release()
	if err := ar.Put(ctx, key, bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	rec := sluice.ArchiveRecord{Version: version, Size: int64(len(content)),
		CRC32C: crc32.Checksum(content, crc32.MakeTable(crc32.Castagnoli)), At: time.Now()}
	if err := store.MarkArchived(ctx, key, rec); err != nil {
		t.Fatal(err)
	}
	if err := store.RemoveLive(ctx, key, version); err != nil {
		t.Fatal(err)
	}
	lcs, err := store.LiveClosed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, lc := range lcs {
		if lc.Key == key {
			t.Fatalf("%s still has a live copy", key)
		}
	}
}

// TestCompressedRangesStayExact proves that a read naming where it starts (Range,
// Last-Event-ID, ?offset, even 0) is answered as before, uncompressed, whatever
// Accept-Encoding says: 206 with the exact bytes and Content-Range, or 200 from the offset.
func TestCompressedRangesStayExact(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	content := logContent(t, 1<<20, 3)
	n := len(content)
	subPublish(t, ts, "r", 0, content, true)
	u := ts.streamURL("r")
	for _, tc := range []struct {
		name, query string
		kv          []string
		status, off int
		end         int // of the bytes wanted
		contentRng  string
	}{
		{"range", "", []string{"Range", "bytes=1000-199999"}, 206, 1000, 200000, fmt.Sprintf("bytes 1000-199999/%d", n)},
		{"open range", "", []string{"Range", "bytes=5-"}, 206, 5, n, fmt.Sprintf("bytes 5-%d/%d", n-1, n)},
		{"suffix", "", []string{"Range", "bytes=-777"}, 206, n - 777, n, fmt.Sprintf("bytes %d-%d/%d", n-777, n-1, n)},
		{"range from 0", "", []string{"Range", "bytes=0-"}, 206, 0, n, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"offset", "?offset=4096", nil, 200, 4096, n, ""},
		{"offset 0", "?offset=0", nil, 200, 0, n, ""},
		{"Last-Event-ID", "", []string{"Last-Event-ID", "12345"}, 200, 12345, n, ""},
	} {
		want := content[tc.off:tc.end]
		for _, ae := range []string{"gzip", "zstd", "gzip, zstd, br"} {
			resp, body := zGet(t, http.MethodGet, u+tc.query, ae, tc.kv...)
			what := tc.name + " with " + ae
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %s, want %d", what, resp.Status, tc.status)
			}
			subWantHeaders(t, resp.Header, "Content-Encoding", "", "Content-Range", tc.contentRng,
				"Content-Length", strconv.Itoa(len(want)), "Stream-Offset", strconv.Itoa(tc.off))
			subEqual(t, what, body, want)
		}
	}
	// HEAD with a Range: the identity headers, as before.
	head, _ := zGet(t, http.MethodHead, u, "gzip", "Range", "bytes=10-20")
	subWantHeaders(t, head.Header, "Content-Encoding", "", "Content-Length", strconv.Itoa(n))
}

// TestCompressedRefusals proves that codings refused (q=0), not offered, or offered below
// identity are not used: the answer is the identity file, with its Content-Length.
func TestCompressedRefusals(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	content := logContent(t, 200<<10, 4)
	subPublish(t, ts, "q", 0, content, true)
	for _, ae := range []string{"gzip;q=0, zstd;q=0", "identity;q=0", "*;q=0", "identity;q=0, *;q=0",
		"br, deflate", "identity, gzip;q=0.5", "gzip;q=1.5"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := zGet(t, method, ts.streamURL("q"), ae)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(content)) {
				t.Errorf("%s, Accept-Encoding %q: %s, Content-Encoding %q, Content-Length %d; want identity, %d",
					method, ae, resp.Status, resp.Header.Get("Content-Encoding"), resp.ContentLength, len(content))
			}
			if method == http.MethodGet {
				subEqual(t, ae, body, content)
			}
		}
	}
}

// TestCompressedNotTiny: a closed stream under minCompressed is read identity, on GET and
// HEAD alike, whatever the client accepts: gzip would make 21 bytes 46.
func TestCompressedNotTiny(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	content := bytes.Repeat([]byte("step 1\n"), (minCompressed-1)/7)
	subPublish(t, ts, "tiny", 0, content, true)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, _ := zGet(t, method, ts.streamURL("tiny"), "gzip, zstd")
		if resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(content)) {
			t.Errorf("%s of a %d-byte stream: Content-Encoding %q, Content-Length %d; want identity",
				method, len(content), resp.Header.Get("Content-Encoding"), resp.ContentLength)
		}
	}
}

// TestCompressedNotFollowers proves that only closed streams' whole reads are compressed:
// an open stream's raw follower, and SSE, get their bytes as ever, flushed as they come.
func TestCompressedNotFollowers(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	subPublish(t, ts, "open", 0, []byte("first\n"), false)
	resp := subGet(t, ctx, ts, "open", "", subHeader("Accept-Encoding", "gzip, zstd"))
	subWantHeaders(t, resp.Header, "Content-Encoding", "")
	first := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
		t.Fatalf("open stream: %q, %v", first, err)
	}
	subPublish(t, ts, "open", 6, []byte("second\n"), true)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("open stream: %q, %v; want the rest, uncompressed", rest, err)
	}

	sse, body := zGet(t, http.MethodGet, ts.streamURL("open"), "gzip, zstd", "Accept", "text/event-stream")
	subWantHeaders(t, sse.Header, "Content-Encoding", "", "Content-Type", "text/event-stream")
	if !bytes.Contains(body, []byte("data: first\n")) {
		t.Errorf("SSE of a closed stream: %q", body)
	}
	// ?follow=false of an open stream is a follower too.
	subPublish(t, ts, "open2", 0, []byte("partial"), false)
	part, body := zGet(t, http.MethodGet, ts.streamURL("open2")+"?follow=false", "gzip")
	if part.Header.Get("Content-Encoding") != "" || string(body) != "partial" {
		t.Errorf("follow=false of an open stream: Content-Encoding %q, %q", part.Header.Get("Content-Encoding"), body)
	}
}

// TestCompressedBounded proves MaxCompressed: while a compressed read holds the only
// place, another whole read is answered uncompressed; once it ends, compression comes
// back. A negative MaxCompressed never compresses.
func TestCompressedBounded(t *testing.T) {
	ts := newTestServer(t, Config{MaxCompressed: 1}, file.Options{SyncInterval: time.Second})
	// Random bytes, which gzip cannot shrink, far more than loopback's socket buffers
	// (32 MiB at most here): the handler cannot end before its client reads the rest.
	const bigSize = 96 << 20
	zPublish(t, ts, "big", io.LimitReader(rand.NewChaCha8([32]byte{5}), bigSize))
	small := logContent(t, 64<<10, 6)
	subPublish(t, ts, "small", 0, small, true)

	ctx, cancel := context.WithCancel(subCtx(t))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.streamURL("big"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	held, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	if held.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("first read: Content-Encoding %q", held.Header.Get("Content-Encoding"))
	}
	resp, body := zGet(t, http.MethodGet, ts.streamURL("small"), "gzip")
	if resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(small)) {
		t.Errorf("second read meanwhile: Content-Encoding %q, Content-Length %d; want identity", resp.Header.Get("Content-Encoding"), resp.ContentLength)
	}
	subEqual(t, "second read", body, small)

	zr, err := gzip.NewReader(held.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, want := sha256.New(), sha256.New()
	n, err := io.Copy(got, zr)
	io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{5}), bigSize))
	if err != nil || n != bigSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("first read: %d bytes decoded, %v; want the %d published", n, err, bigSize)
	}
	resEventually(t, 10*time.Second, "the place given back", func() (bool, string) {
		return len(ts.compressing) == 0, "a compressed read still under way"
	})
	if resp, _ := zGet(t, http.MethodGet, ts.streamURL("small"), "gzip"); resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("read after: Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}

	off := newTestServer(t, Config{MaxCompressed: -1}, file.Options{})
	subPublish(t, off, "small", 0, small, true)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if resp, _ := zGet(t, method, off.streamURL("small"), "gzip, zstd"); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("MaxCompressed -1, %s: Content-Encoding %q", method, resp.Header.Get("Content-Encoding"))
		}
	}
}

// zPublish publishes body (chunked) to the stream of key and closes it.
func zPublish(t testing.TB, ts *testServer, key string, body io.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.streamURL(key), io.NopCloser(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Stream-Closed") != "true" {
		t.Fatalf("publish %s: %s", key, resp.Status)
	}
}

// TestCompressedReadMemoryBounded proves that a compressed read streams: a 64 MiB log
// read whole in gzip and in zstd, by a client that decodes as it reads, never raises the
// heap objects by 32 MiB (the stream is never held, only the encoder's window). Under
// the race detector, which makes compression some 10 times slower, the log is 16 MiB
// and the bound half of it.
func TestCompressedReadMemoryBounded(t *testing.T) {
	size, bound := 64<<20, int64(32<<20)
	if resRaceEnabled() {
		size, bound = 16<<20, 8<<20
	}
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	zPublish(t, ts, "huge", newLogReader(size, 8))
	want := sha256.New()
	io.Copy(want, newLogReader(size, 8))
	for _, enc := range []string{"gzip", "zstd"} {
		before := resHeap()
		peak := resWatchHeap()
		wire, got, n := zStream(t, ts.streamURL("huge"), enc)
		peakObjects := peak()
		if n != int64(size) || !bytes.Equal(got, want.Sum(nil)) {
			t.Fatalf("%s: %d bytes decoded, not the %d published", enc, n, size)
		}
		t.Logf("%s: %d MiB in %.1f MiB; heap in use %.1f MiB before, peak heap objects %.1f MiB", enc, size>>20, resMiB(uint64(wire)), resMiB(before), resMiB(peakObjects))
		if growth := int64(peakObjects) - int64(before); growth >= bound {
			t.Errorf("%s: heap objects peaked %.1f MiB above the start during a %d MiB read; want < %d MiB", enc, resMiB(uint64(growth)), size>>20, bound>>20)
		}
	}
}

// zStream reads the stream at u whole in enc, decoding as it reads, and returns the
// bytes on the wire, the SHA-256 of the decoded bytes and their count.
func zStream(t testing.TB, u, enc string) (wire int64, sum []byte, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept-Encoding", enc)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ce := resp.Header.Get("Content-Encoding"); ce != enc {
		t.Fatalf("Content-Encoding %q, want %s", ce, enc)
	}
	cr := &countingReader{r: resp.Body}
	var dec io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(cr)
		if err != nil {
			t.Fatal(err)
		}
		dec = zr
	case "zstd":
		zr, err := zstd.NewReader(cr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		dec = zr
	}
	h := sha256.New()
	if n, err = io.Copy(h, dec); err != nil {
		t.Fatalf("%s: %v after %d bytes", enc, err, n)
	}
	return cr.n, h.Sum(nil), n
}

// TestCompressedCurl proves that a real client decodes what the server sends: curl
// --compressed (zstd, with libzstd; gzip, with zlib) writes the stream's bytes exactly.
func TestCompressedCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (.ci/run installs it)")
	}
	ts := newTestServer(t, Config{}, file.Options{SyncInterval: time.Second})
	content := logContent(t, 2<<20, 7)
	subPublish(t, ts, "c", 0, content, true)
	for _, args := range [][]string{{}, {"-H", "Accept-Encoding: gzip"}} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.CommandContext(subCtx(t), curl, append([]string{"-sS", "--compressed", "-o", out, "-w", "%{size_download}", ts.streamURL("c")}, args...)...)
		wire, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %q: %v", args, err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		subEqual(t, fmt.Sprintf("curl --compressed %q", args), got, content)
		if n, _ := strconv.Atoi(string(wire)); n == 0 || n >= len(content)/2 {
			t.Errorf("curl %q: %s bytes on the wire for %d", args, wire, len(content))
		}
	}
}

// TestCompressedReadCutShort proves that a compressed read the store cannot complete
// is aborted, never ended cleanly, so that the client knows it is incomplete; and that
// the server releases its handle of the stream, though the abort skips the caller's
// release. The stream's data file loses half of its bytes under a handle that the test
// holds (so that the stream keeps its length); once the test releases its own, no handle
// is left: the data file is closed.
func TestCompressedReadCutShort(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	content := logContent(t, 4<<20, 9)
	subPublish(t, ts, "lost", 0, content, true)
	ctx := context.Background()
	st, err := ts.store.Open(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := st.Read(ctx, make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	data := zDataFiles(t)
	if len(data) != 1 {
		t.Fatalf("data files open: %q, want the stream's", data)
	}
	if err := os.Truncate(data[0], int64(len(content)/2)); err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"gzip", "zstd"} {
		req, _ := http.NewRequestWithContext(subCtx(t), http.MethodGet, ts.streamURL("lost"), nil)
		req.Header.Set("Accept-Encoding", enc)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: a clean end after %d bytes; want the response cut short", enc, len(body))
		}
	}
	st.Release()
	if data := zDataFiles(t); len(data) != 0 {
		t.Errorf("data files still open after the test's release: %q; a handle leaked", data)
	}
}

// zDataFiles lists the stream data files this process has open.
func zDataFiles(t testing.TB) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var data []string
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && filepath.Base(p) == "data" {
			data = append(data, p)
		}
	}
	return data
}
