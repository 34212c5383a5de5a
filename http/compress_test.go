package http

import (
	"net/http"
	"testing"
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
