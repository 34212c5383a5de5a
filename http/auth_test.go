package http

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/jwt"
)

// authKey is the shared key of the access-control tests.
var authKey = []byte("auth-matrix-key-0123456789abcdef")

// authServer is a server whose Authorizer checks capability tokens signed with authKey.
func authServer(t *testing.T, log io.Writer) *testServer {
	t.Helper()
	v, err := jwt.NewVerifier(authKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jwt.NewSigner(authKey)
	cfg := Config{Authorizer: &jwt.Authorizer{Verifier: v}, Index: true, LongPollTimeout: 100 * time.Millisecond,
		StreamTokens: func(key string) (string, string, error) {
			p, err := signer.Mint(jwt.Grant{Allow: []sluice.Op{sluice.OpPublish}, Keys: []string{key}}, time.Hour)
			if err != nil {
				return "", "", err
			}
			r, err := signer.Mint(jwt.Grant{Allow: []sluice.Op{sluice.OpRead}, Keys: []string{key}}, time.Hour)
			return p, r, err
		}}
	if log != nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return newTestServer(t, cfg, file.Options{})
}

// token signs claims for op on the keys under prefix, valid until exp.
func token(t testing.TB, key []byte, ops []sluice.Op, prefix string, exp time.Time) string {
	t.Helper()
	tok, err := gojwt.NewWithClaims(gojwt.SigningMethodHS256, gojwt.MapClaims{
		"exp": exp.Unix(), "allow": ops, "prefixes": []string{prefix},
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authRoute is one thing a request can do, with the verb it needs, and how to tell it
// changed nothing when refused.
type authRoute struct {
	name   string
	op     sluice.Op
	method string
	target string // under the server's URL; {k} is the stream's key
	header []string
	body   string
	ok     int  // the status of a request allowed
	closed bool // the stream it needs is closed, so that a follower ends
}

func authRoutes() []authRoute {
	return []authRoute{
		{"busl create", sluice.OpCreate, http.MethodPut, "/streams/{k}", nil, "", http.StatusCreated, false},
		{"busl publish", sluice.OpPublish, http.MethodPost, "/streams/{k}", []string{"Stream-Close", "false", "Stream-Offset", "7"}, "bytes", http.StatusOK, false},
		{"busl random key", sluice.OpCreate, http.MethodPost, "/streams", nil, "", http.StatusCreated, false},
		{"busl raw", sluice.OpRead, http.MethodGet, "/streams/{k}?follow=false", nil, "", http.StatusOK, false},
		{"busl sse", sluice.OpRead, http.MethodGet, "/streams/{k}?format=sse&follow=false", nil, "", http.StatusOK, false},
		{"busl viewer", sluice.OpRead, http.MethodGet, "/streams/{k}", []string{"Accept", "text/html"}, "", http.StatusOK, false},
		{"busl head", sluice.OpRead, http.MethodHead, "/streams/{k}", nil, "", http.StatusOK, false},
		{"busl close", sluice.OpClose, http.MethodDelete, "/streams/{k}", nil, "", http.StatusOK, false},
		{"busl purge", sluice.OpPurge, http.MethodDelete, "/streams/{k}?purge=true", nil, "", http.StatusNoContent, false},
		{"index", sluice.OpRead, http.MethodGet, "/streams/", nil, "", http.StatusOK, false},
		{"metrics", sluice.OpMetrics, http.MethodGet, "/metrics", nil, "", http.StatusOK, false},
		{"durable create", sluice.OpCreate, http.MethodPut, "/v1/stream/{k}", []string{"Content-Type", "text/plain"}, "", http.StatusCreated, false},
		{"durable append", sluice.OpPublish, http.MethodPost, "/v1/stream/{k}", []string{"Content-Type", "text/plain"}, "more", http.StatusNoContent, false},
		{"durable read", sluice.OpRead, http.MethodGet, "/v1/stream/{k}?offset=-1", nil, "", http.StatusOK, false},
		{"durable long-poll", sluice.OpRead, http.MethodGet, "/v1/stream/{k}?offset=now&live=long-poll", nil, "", http.StatusNoContent, false},
		{"durable sse", sluice.OpRead, http.MethodGet, "/v1/stream/{k}?offset=now&live=sse", nil, "", http.StatusOK, true},
		{"durable head", sluice.OpRead, http.MethodHead, "/v1/stream/{k}", nil, "", http.StatusOK, false},
		{"durable delete", sluice.OpPurge, http.MethodDelete, "/v1/stream/{k}", nil, "", http.StatusNoContent, false},
	}
}

// TestAuthMatrix proves the access-control rules over real sockets, on every route of
// both protocols and every way of presenting a token: with no token, a forged or an
// expired one, a right one is 401 with WWW-Authenticate: Bearer (and a reason that
// says nothing of which); a token of the wrong prefix or verb is 403; the right token
// is served. A refused request changes nothing: the streams hold what they held.
func TestAuthMatrix(t *testing.T) {
	ts := authServer(t, nil)
	ctx := context.Background()
	other := []byte("another-key-0123456789abcdef0123")
	in := time.Now().Add(time.Hour)
	for i, rt := range authRoutes() {
		key := fmt.Sprintf("m/%d", i)
		target := strings.ReplaceAll(rt.target, "{k}", key)
		wrongVerb := sluice.OpRead
		if rt.op == sluice.OpRead {
			wrongVerb = sluice.OpPublish
		}
		prefix := "m/"
		if !strings.Contains(rt.target, "{k}") {
			prefix = "" // the server itself, or a key of its choosing
		}
		cases := []struct {
			name, tok string
			want      int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"forged", token(t, other, []sluice.Op{rt.op}, prefix, in), http.StatusUnauthorized},
			{"expired", token(t, authKey, []sluice.Op{rt.op}, prefix, time.Now().Add(-time.Minute)), http.StatusUnauthorized},
			{"garbage", "not.a.token", http.StatusUnauthorized},
			{"wrong prefix", token(t, authKey, []sluice.Op{rt.op}, "elsewhere/", in), http.StatusForbidden},
			{"wrong verb", token(t, authKey, []sluice.Op{wrongVerb}, prefix, in), http.StatusForbidden},
			{"right", token(t, authKey, []sluice.Op{rt.op}, prefix, in), rt.ok},
		}
		for _, c := range cases {
			for _, carrier := range []string{"bearer", "query", "basic"} {
				if c.name == "right" || c.name == "no token" {
					setUpRoute(t, ts, rt, key) // the stream the allowed request needs, afresh
				}
				before := routeState(ts, key)
				resp, body := authCall(t, ts, rt, target, c.tok, carrier)
				if resp.StatusCode != c.want {
					t.Errorf("%s, %s token in %s: %d %q, want %d", rt.name, c.name, carrier, resp.StatusCode, body, c.want)
				}
				if c.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s, %s: 401 without WWW-Authenticate: Bearer", rt.name, c.name)
				}
				if c.want != rt.ok && routeState(ts, key) != before {
					t.Errorf("%s, %s token in %s: refused, yet the stream changed: %s, then %s", rt.name, c.name, carrier, before, routeState(ts, key))
				}
				if c.name == "no token" && carrier == "bearer" {
					break // one way to present nothing
				}
			}
		}
	}
	// WebSocket: the upgrade is refused without a right token, accepted with one.
	setUpRoute(t, ts, authRoute{op: sluice.OpRead}, "m/ws")
	if _, resp, err := websocket.Dial(ctx, subWSURL(ts, "m/ws", ""), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket without a token: %v, %v; want 401", resp, err)
	}
	c, _, err := websocket.Dial(ctx, subWSURL(ts, "m/ws", "?token="+token(t, authKey, []sluice.Op{sluice.OpRead}, "m/", in)), nil)
	if err != nil {
		t.Fatalf("WebSocket with a read token: %v", err)
	}
	c.CloseNow()
}

// setUpRoute makes the stream of key as an allowed request of rt needs it: absent for a
// create, else there, with bytes.
func setUpRoute(t *testing.T, ts *testServer, rt authRoute, key string) {
	t.Helper()
	ctx := context.Background()
	ts.store.Purge(ctx, key)
	if rt.op == sluice.OpCreate {
		return
	}
	cfg := sluice.Config{}
	if strings.HasPrefix(rt.target, "/v1/") {
		cfg.ContentType = "text/plain"
	}
	if _, _, err := ts.store.Create(ctx, key, sluice.CreateOptions{Config: cfg, Data: []byte("stored "), Closed: rt.closed}); err != nil {
		t.Fatal(err)
	}
}

// routeState tells what the stream of key holds, for a before and after.
func routeState(ts *testServer, key string) string {
	st, err := ts.store.Open(context.Background(), key)
	if err != nil {
		return "absent"
	}
	defer st.Release()
	info := st.Info()
	return fmt.Sprintf("%d bytes, closed %v", info.Length, info.Closed)
}

// authCall makes the request of rt to target with tok presented as carrier says.
func authCall(t *testing.T, ts *testServer, rt authRoute, target, tok, carrier string) (*http.Response, string) {
	t.Helper()
	h := append([]string(nil), rt.header...)
	switch {
	case tok == "":
	case carrier == "bearer":
		h = append(h, "Authorization", "Bearer "+tok)
	case carrier == "basic":
		h = append(h, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("busltee:"+tok)))
	case carrier == "query":
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + "token=" + tok
	}
	var body io.Reader
	if rt.body != "" {
		body = strings.NewReader(rt.body)
	}
	return call(t, rt.method, ts.url+target, body, h...)
}

// TestSecretsStayOut proves "tokens and ?token= never appear in logs, metrics, error
// bodies, Location headers, the viewer's links or the index": after a run of requests
// full of tokens, right, wrong and forged, on every route and carrier, neither the
// server's log (at debug level), nor /metrics, nor any response's headers or body
// holds any of them.
func TestSecretsStayOut(t *testing.T) {
	var log lockedBuffer
	ts := authServer(t, &log)
	in := time.Now().Add(time.Hour)
	var secrets []string
	var seen bytes.Buffer
	for i, rt := range authRoutes() {
		key := fmt.Sprintf("s/%d", i)
		target := strings.ReplaceAll(rt.target, "{k}", key)
		prefix := "s/"
		if !strings.Contains(rt.target, "{k}") {
			prefix = ""
		}
		for _, tok := range []string{
			token(t, authKey, []sluice.Op{rt.op}, prefix, in),
			token(t, authKey, []sluice.Op{sluice.OpClose}, "x/", in),
			token(t, []byte("forged-key-0123456789abcdef01234"), []sluice.Op{rt.op}, prefix, in),
		} {
			secrets = append(secrets, tok)
			for _, carrier := range []string{"bearer", "query", "basic"} {
				setUpRoute(t, ts, rt, key)
				resp, body := authCall(t, ts, rt, target, tok, carrier)
				resp.Header.Write(&seen)
				seen.WriteString(body)
			}
		}
	}
	// The tokens POST /streams answers are the caller's own: they are meant to be there,
	// and must appear nowhere else.
	all := token(t, authKey, []sluice.Op{sluice.OpMetrics, sluice.OpRead}, "", in)
	secrets = append(secrets, all)
	resp, body := call(t, http.MethodGet, ts.url+"/metrics?token="+all, nil)
	wantStatus(t, resp, body, http.StatusOK)
	seen.WriteString(body)
	resp, body = call(t, http.MethodGet, ts.url+"/streams/", nil, "Authorization", "Bearer "+all)
	wantStatus(t, resp, body, http.StatusOK)
	seen.WriteString(body)
	for _, s := range secrets {
		for where, text := range map[string]string{"the log": log.String(), "responses and /metrics": seen.String()} {
			if strings.Contains(text, s) {
				t.Errorf("a token is in %s", where)
			}
		}
		// Nor the signature alone (a log that cut the token short would still leak it).
		if sig := s[strings.LastIndexByte(s, '.')+1:]; strings.Contains(log.String(), sig) {
			t.Errorf("a token's signature is in the log")
		}
	}
	if !strings.Contains(log.String(), `"path":"/streams/s/0"`) {
		t.Fatal("the log has no request lines: the test proves nothing")
	}
}
