package http

import (
	"errors"
	"math"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
)

// TestParseNumber proves "Numbers ... are unsigned decimal integers below 2^63; anything
// else (sign, fraction, hex, spaces, overflow) is 400".
func TestParseNumber(t *testing.T) {
	good := map[string]int64{
		"0":                   0,
		"7":                   7,
		"007":                 7,
		"1234567890":          1234567890,
		"9223372036854775807": math.MaxInt64,
		"0000000000000000000": 0,
	}
	for s, want := range good {
		if got, err := parseNumber(s); err != nil || got != want {
			t.Errorf("parseNumber(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	bad := []string{"", " ", "-0", "-1", "+1", "1.0", "1.", ".1", "1e3", "0x1f", "0X1F", "1f", " 1", "1 ", "1 2",
		"\t1", "1\n", "1_000", "1,000", "١", "½", "٣", "\x001", "9223372036854775808", "9999999999999999999",
		"18446744073709551615", "18446744073709551616", "00000000000000000001", "99999999999999999999999"}
	for _, s := range bad {
		if got, err := parseNumber(s); !errors.Is(err, errBadRequest) {
			t.Errorf("parseNumber(%q) = %d, %v; want an errBadRequest", s, got, err)
		}
	}
}

// TestParseRange proves the single ranges a follower may ask for, "bytes=N-", "bytes=N-M"
// and "bytes=-N", parse to [start, end) or a suffix, and that anything else is 400.
func TestParseRange(t *testing.T) {
	good := []struct {
		in   string
		want byteRange
	}{
		{"bytes=0-", byteRange{0, -1, -1}},
		{"bytes=5-", byteRange{5, -1, -1}},
		{"bytes=5-5", byteRange{5, 6, -1}},
		{"bytes=5-9", byteRange{5, 10, -1}},
		{"bytes=0-0", byteRange{0, 1, -1}},
		{"bytes=-3", byteRange{0, -1, 3}},
		{"bytes=-0", byteRange{0, -1, 0}},
		{"bytes=9223372036854775807-", byteRange{math.MaxInt64, -1, -1}},
		{"bytes=0-9223372036854775806", byteRange{0, math.MaxInt64, -1}},
		{"bytes=0-9223372036854775807", byteRange{0, -1, -1}}, // to the end: no overflow
	}
	for _, g := range good {
		if got, err := parseRange(g.in); err != nil || got != g.want {
			t.Errorf("parseRange(%q) = %+v, %v; want %+v", g.in, got, err, g.want)
		}
	}
	bad := []string{"", "bytes=", "bytes=-", "bytes=--1", "bytes=5", "bytes=x-", "bytes=5-x", "bytes=-x",
		"bytes=5-3", "bytes=1-2,3-4", "bytes=1-,", "bytes=0-1,", "bytes=-1-2", "bytes=1-2-3", "bytes=+1-",
		"bytes=-+1", "bytes=1.5-", "bytes=0x1-", "bytes= 1-", "bytes=1 -", "bytes=1- 2", "Bytes=1-", "bytes =1-",
		"items=1-", "1-", "bytes=9223372036854775808-", "bytes=0-9223372036854775808", "bytes=-9223372036854775808"}
	for _, s := range bad {
		if got, err := parseRange(s); !errors.Is(err, errBadRequest) {
			t.Errorf("parseRange(%q) = %+v, %v; want an errBadRequest", s, got, err)
		}
	}
}

// TestStartOffset proves "Start offset, first that applies: Last-Event-ID: N, then
// Range: bytes=N-, then query ?offset=N, else 0. A malformed value is 400", where a header
// that is present but empty is malformed, not absent.
func TestStartOffset(t *testing.T) {
	cases := []struct {
		name   string
		query  string
		header map[string][]string
		want   int64
		rng    *byteRange
		bad    bool
	}{
		{name: "none", want: 0},
		{name: "offset", query: "?offset=7", want: 7},
		{name: "range", header: map[string][]string{"Range": {"bytes=5-"}}, want: 5, rng: &byteRange{5, -1, -1}},
		{name: "range with end", header: map[string][]string{"Range": {"bytes=5-9"}}, want: 5, rng: &byteRange{5, 10, -1}},
		{name: "suffix range", header: map[string][]string{"Range": {"bytes=-4"}}, want: 0, rng: &byteRange{0, -1, 4}},
		{name: "last-event-id", header: map[string][]string{"Last-Event-Id": {"3"}}, want: 3},
		{name: "range over offset", query: "?offset=7", header: map[string][]string{"Range": {"bytes=5-"}}, want: 5, rng: &byteRange{5, -1, -1}},
		{name: "last-event-id over range", header: map[string][]string{"Range": {"bytes=5-"}, "Last-Event-Id": {"3"}}, want: 3},
		{name: "last-event-id over offset", query: "?offset=7", header: map[string][]string{"Last-Event-Id": {"3"}}, want: 3},
		{name: "last-event-id over both", query: "?offset=7", header: map[string][]string{"Range": {"bytes=5-"}, "Last-Event-Id": {"3"}}, want: 3},
		{name: "last-event-id 0 over both", query: "?offset=7", header: map[string][]string{"Range": {"bytes=5-"}, "Last-Event-Id": {"0"}}, want: 0},
		{name: "other query", query: "?follow=false&format=sse", want: 0},
		{name: "bad offset", query: "?offset=-1", bad: true},
		{name: "empty offset", query: "?offset=", bad: true},
		{name: "bad range", header: map[string][]string{"Range": {"bytes=a-"}}, bad: true},
		{name: "empty range", header: map[string][]string{"Range": {""}}, bad: true},
		{name: "two ranges", header: map[string][]string{"Range": {"bytes=1-", "bytes=2-"}}, bad: true},
		{name: "bad last-event-id", header: map[string][]string{"Last-Event-Id": {"0x3"}}, bad: true},
		{name: "empty last-event-id", header: map[string][]string{"Last-Event-Id": {""}}, bad: true},
		{name: "two last-event-ids", header: map[string][]string{"Last-Event-Id": {"1", "2"}}, bad: true},
		{name: "bad last-event-id over good range", header: map[string][]string{"Range": {"bytes=5-"}, "Last-Event-Id": {"x"}}, bad: true},
		{name: "bad range over good offset", query: "?offset=7", header: map[string][]string{"Range": {"bytes=x-"}}, bad: true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/streams/s"+c.query, nil)
		for k, v := range c.header {
			r.Header[k] = v
		}
		got, rng, err := startOffset(r)
		if c.bad {
			if !errors.Is(err, errBadRequest) {
				t.Errorf("%s: startOffset = %d, %v; want an errBadRequest", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want || (rng == nil) != (c.rng == nil) || (rng != nil && *rng != *c.rng) {
			t.Errorf("%s: startOffset = %d, %+v, %v; want %d, %+v", c.name, got, rng, err, c.want, c.rng)
		}
	}
}

// decimal is what parseNumber must accept: 1 to 19 ASCII digits.
var decimal = regexp.MustCompile(`^[0-9]{1,19}$`)

// FuzzParseNumber proves that parseNumber accepts exactly the strings of 1 to 19 ASCII
// digits whose value is below 2^63, and that it reads them as strconv.ParseUint does.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "1", "007", "42", "9223372036854775807", "9223372036854775808", "9999999999999999999",
		"18446744073709551616", "-1", "+1", "1.5", "0x10", " 1", "1 ", "", "1e9", "١"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseNumber(s)
		want, perr := strconv.ParseUint(s, 10, 64)
		valid := decimal.MatchString(s) && perr == nil && want < 1<<63
		switch {
		case valid && err != nil:
			t.Fatalf("parseNumber(%q) refused a valid number: %v", s, err)
		case !valid && err == nil:
			t.Fatalf("parseNumber(%q) = %d, want an error", s, got)
		case !valid && !errors.Is(err, errBadRequest):
			t.Fatalf("parseNumber(%q): %v is not an errBadRequest", s, err)
		case valid && uint64(got) != want:
			t.Fatalf("parseNumber(%q) = %d, want %d", s, got, want)
		}
	})
}

// FuzzParseRange proves that parseRange never panics, refuses with errBadRequest, and
// accepts only well-formed single ranges: start ≥ 0, end either open (-1) or past start,
// suffix either unused (-1) or ≥ 0 with start 0 and end open.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-", "bytes=5-9", "bytes=-3", "bytes=5-3", "bytes=1-2,3-4", "bytes=", "bytes=-",
		"bytes=0-9223372036854775807", "bytes=9223372036854775807-9223372036854775807", "bytes=-9223372036854775807",
		"bytes=9223372036854775808-", "items=0-", "bytes=1.5-", "bytes= 1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRange(s)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("parseRange(%q): %v is not an errBadRequest", s, err)
			}
			return
		}
		switch {
		case r.start < 0:
			t.Fatalf("parseRange(%q) = %+v: negative start", s, r)
		case r.end >= 0 && r.start > r.end:
			t.Fatalf("parseRange(%q) = %+v: ends before it starts", s, r)
		case r.end >= 0 && r.start == r.end:
			t.Fatalf("parseRange(%q) = %+v: empty, but bytes=N-M holds byte M", s, r)
		case r.end < -1:
			t.Fatalf("parseRange(%q) = %+v: end overflowed", s, r)
		case r.suffix < -1:
			t.Fatalf("parseRange(%q) = %+v: bad suffix", s, r)
		case r.suffix >= 0 && (r.start != 0 || r.end != -1):
			t.Fatalf("parseRange(%q) = %+v: a suffix range with a start or an end", s, r)
		}
		// What was accepted reads back as the header it came from.
		var again string
		switch {
		case r.suffix >= 0:
			again = "bytes=-" + strconv.FormatInt(r.suffix, 10)
		case r.end < 0:
			again = "bytes=" + strconv.FormatInt(r.start, 10) + "-"
		default:
			again = "bytes=" + strconv.FormatInt(r.start, 10) + "-" + strconv.FormatInt(r.end-1, 10)
		}
		if r2, err := parseRange(again); err != nil || r2 != r {
			t.Fatalf("parseRange(%q) = %+v, but its canonical form %q gives %+v, %v", s, r, again, r2, err)
		}
	})
}
