package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// FuzzParseOffset proves that parseOffset never panics, refuses with errBadRequest,
// reads -1 as 0 and now as the length, and accepts an offset only if formatOffset gives
// it back for the same byte: a position means one byte, on both prefixes.
func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"-1", "now", "0000000000000000_0000000000000000", "0000000000000000_0000000000000042",
		"9999999999999999_9999999999999999", "0_5", "1_0", "_1", "1_", "0,1", "0 1", "", "-2", "NOW", "0_5\n", "0_99999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseOffset(s, 77)
		switch {
		case err != nil && !errors.Is(err, errBadRequest):
			t.Fatalf("parseOffset(%q): %v is not an errBadRequest", s, err)
		case err != nil:
		case s == "-1" && n != 0, s == "now" && n != 77:
			t.Fatalf("parseOffset(%q) = %d", s, n)
		case s != "-1" && s != "now" && n < 0:
			t.Fatalf("parseOffset(%q) = %d, negative", s, n)
		case s != "-1" && s != "now":
			if m, err := parseOffset(formatOffset(n), 77); err != nil || m != n {
				t.Fatalf("parseOffset(%q) = %d, but its canonical form %q gives %d, %v", s, n, formatOffset(n), m, err)
			}
		}
	})
}

// FuzzJSONRecords proves that an append to a JSON stream is refused (errBadRequest or
// ErrBadRecord) unless it is JSON, and that what is accepted is whole records, each a
// compact JSON value on its line, which read back as the JSON array the append meant.
func FuzzJSONRecords(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[{"a":1},{"b":2}]`, `[]`, `[[1,2]]`, `"s"`, `42`, `null`, `{ invalid json }`,
		"[1,\n2]", `{"s":"line\nbreak"}`, `[`, ``, ` `, `{"a":1} {"b":2}`, "\"\xff\""} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, create bool) {
		rec, err := jsonRecords(body, create)
		if err != nil {
			if !errors.Is(err, errBadRequest) && !errors.Is(err, sluice.ErrBadRecord) {
				t.Fatalf("jsonRecords(%q): %v is neither errBadRequest nor ErrBadRecord", body, err)
			}
			return
		}
		if len(rec) > 0 && sluice.WholeRecords(rec) != len(rec) {
			t.Fatalf("jsonRecords(%q) = %q: not whole records", body, rec)
		}
		var got []json.RawMessage
		for _, line := range bytes.Split(bytes.TrimSuffix(rec, []byte("\n")), []byte("\n")) {
			if len(rec) == 0 {
				break
			}
			if !json.Valid(line) {
				t.Fatalf("jsonRecords(%q): record %q is not JSON", body, line)
			}
			got = append(got, line)
		}
		if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
			t.Fatalf("jsonRecords(%q) accepted what is not JSON", body)
		}
		if !create && len(got) == 0 && len(bytes.TrimSpace(body)) > 0 {
			t.Fatalf("jsonRecords(%q) appends nothing, but did not refuse", body)
		}
	})
}

// FuzzProducerHeaders proves that producer headers are all or nothing, with an id and
// decimal numbers below 2^53, refused with errBadRequest otherwise.
func FuzzProducerHeaders(f *testing.F) {
	f.Add("p", "0", "0", true, true, true)
	f.Add("", "0", "0", true, true, true)
	f.Add("p", "1e3", "0", true, true, true)
	f.Add("p", "-1", "0", true, true, true)
	f.Add("p", "9007199254740992", "0", true, true, true)
	f.Add("p", "0", "", true, false, true)
	f.Fuzz(func(t *testing.T, id, epoch, seq string, hasID, hasEpoch, hasSeq bool) {
		h := http.Header{}
		for _, kv := range []struct {
			has  bool
			k, v string
		}{{hasID, "Producer-Id", id}, {hasEpoch, "Producer-Epoch", epoch}, {hasSeq, "Producer-Seq", seq}} {
			if kv.has {
				h.Set(kv.k, kv.v)
			}
		}
		p, err := producerHeaders(h)
		switch {
		case err != nil && !errors.Is(err, errBadRequest):
			t.Fatalf("producerHeaders: %v is not an errBadRequest", err)
		case err != nil:
		case !hasID && !hasEpoch && !hasSeq:
			if p != nil {
				t.Fatalf("no headers gave %+v", p)
			}
		case !hasID || !hasEpoch || !hasSeq || id == "":
			t.Fatalf("headers %v accepted: %+v", h, p)
		case p.ID != id || p.Epoch >= 1<<53 || p.Seq >= 1<<53 || strings.TrimLeft(epoch+seq, "0123456789") != "":
			t.Fatalf("headers %v gave %+v", h, p)
		}
	})
}

// TestDurableAppendTooLarge proves "no request reads a whole POST into memory beyond a
// documented limit with a clear 413": an append or a create over MaxAppend is 413, and
// stores nothing.
func TestDurableAppendTooLarge(t *testing.T) {
	ts := newTestServer(t, Config{MaxAppend: 1 << 10}, file.Options{})
	resp, body := call(t, http.MethodPut, ts.url+durablePrefix+"big", nil, "Content-Type", "text/plain")
	wantStatus(t, resp, body, http.StatusCreated)
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		key := "big"
		if method == http.MethodPut {
			key = "big2"
		}
		resp, body := call(t, method, ts.url+durablePrefix+key, strings.NewReader(strings.Repeat("x", 1<<10+1)), "Content-Type", "text/plain")
		wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	}
	resp, body = call(t, http.MethodGet, ts.url+durablePrefix+"big?offset=-1", nil)
	if body != "" {
		t.Fatalf("a refused append stored %d bytes", len(body))
	}
	resp, _ = call(t, http.MethodHead, ts.url+durablePrefix+"big2", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a refused create made the stream: HEAD %d", resp.StatusCode)
	}
}
