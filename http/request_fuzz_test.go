package http

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/jwt"
)

// FuzzCredentials proves the parsing of what a request presents never panics, takes a
// bearer token without the spaces around it, and takes a Basic password for a token.
func FuzzCredentials(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Bearer", "Bearer ", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p")),
		"Basic !!!", "Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")), "Token x", "", "Bearer a b"} {
		f.Add(s, "q")
	}
	f.Fuzz(func(t *testing.T, auth, query string) {
		r := httptest.NewRequest(http.MethodGet, "/streams/k", nil)
		r.Header.Set("Authorization", auth)
		c := credentials(r)
		if c.Token != strings.TrimSpace(c.Token) && !strings.HasPrefix(strings.ToLower(auth), "basic ") {
			t.Fatalf("credentials(%q) took the token %q with its spaces", auth, c.Token)
		}
		if u, p, ok := r.BasicAuth(); ok && (c.User != u || c.Password != p || (c.Token != p && !strings.HasPrefix(strings.ToLower(auth), "bearer"))) {
			t.Fatalf("credentials(%q) = %+v for Basic %q:%q", auth, c, u, p)
		}
	})
}

// FuzzRequest sends whatever method, path, query, headers (Authorization and Origin
// among them) and body to a server whose streams need tokens: it never answers 5xx nor
// panics, and a refused request (401, 403, 429) stores no byte and changes no stream.
func FuzzRequest(f *testing.F) {
	good := token(f, authKey, []sluice.Op{sluice.OpCreate, sluice.OpPublish, sluice.OpRead, sluice.OpClose, sluice.OpPurge}, "f/", time.Now().Add(24*time.Hour))
	for _, c := range [][6]string{
		{"POST", "/streams/f/a", "", "Bearer " + good, "", "hello"},
		{"PUT", "/v1/stream/f/b", "", "Bearer " + good, "https://evil.example", ""},
		{"DELETE", "/streams/f/closed", "purge=true", "", "", ""},
		{"GET", "/v1/stream/f/closed", "offset=-1&live=long-poll", "Bearer " + good, "", ""},
		{"POST", "/v1/stream/f/closed", "", "Basic Zm9vOmJhcg==", "null", "{"},
		{"GET", "/streams/f/closed", "token=" + good + "&format=sse", "", "", ""},
		{"OPTIONS", "/streams/..", "", "", "https://x.example", ""},
		{"PATCH", "/v1/stream/%2e%2e/x", "offset=now", "Bearer x.y.z", "", "\x00\xff"},
		{"GET", "/", "", "Bearer " + good, "", ""},
	} {
		f.Add(c[0], c[1], c[2], c[3], c[4], []byte(c[5]))
	}
	store, err := file.Open(f.TempDir(), file.Options{SyncInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	store.Create(context.Background(), "f/closed", sluice.CreateOptions{Data: []byte("kept"), Closed: true})
	v, _ := jwt.NewVerifier(authKey)
	srv := NewServer(store, Config{Logger: slog.New(slog.DiscardHandler), Authorizer: &jwt.Authorizer{Verifier: v},
		Index: true, LongPollTimeout: time.Millisecond, MaxAppend: 1 << 16})
	f.Fuzz(func(t *testing.T, method, path, query, auth, origin string, body []byte) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path+query, " \r\n\x00#") || !utf8.ValidString(auth+origin) {
			return // not an HTTP request a server could receive
		}
		req, err := http.NewRequest(method, "http://sluice.test"+path+"?"+query, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", auth)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		before := storeState(store)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s: %d %q", method, path, query, rec.Code, rec.Body.String())
		}
		if refused := rec.Code == 401 || rec.Code == 403 || rec.Code == 429; refused && storeState(store) != before {
			t.Fatalf("%s %s?%s refused with %d, yet the streams changed", method, path, query, rec.Code)
		}
	})
}

func validMethod(m string) bool {
	return m != "" && strings.IndexFunc(m, func(r rune) bool { return r < '!' || r > '~' || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) < 0
}

// storeState tells the streams of the fuzzed keys, for a before and after.
func storeState(s *file.Store) string {
	var b strings.Builder
	for _, k := range []string{"f/a", "f/b", "f/closed", "a", "x"} {
		st, err := s.Open(context.Background(), k)
		if err != nil {
			fmt.Fprintf(&b, "%s absent; ", k)
			continue
		}
		info := st.Info()
		st.Release()
		fmt.Fprintf(&b, "%s %d %v; ", k, info.Length, info.Closed)
	}
	fmt.Fprintf(&b, "open %d", s.OpenStreams())
	return b.String()
}
