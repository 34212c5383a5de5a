package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/nettest"
)

// writeKey writes a random shared key of 32 bytes (as 64 hex digits, with a newline, as
// an operator's file would have it) and returns its file.
func writeKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	f := filepath.Join(t.TempDir(), "auth.key")
	if err := os.WriteFile(f, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// sluiceOut runs the binary with args and returns its stdout, failing the test unless
// it exits 0.
func sluiceOut(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(sluiceBin, args...)
	cmd.Env = append(childEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// TestCapabilityTokens runs a server with --auth-key-file and proves the whole path a
// CI system takes: sluice token mints a token for a prefix; without it a write is 401
// (with WWW-Authenticate: Bearer) and stores nothing; with it sluice push publishes and
// sluice tail (SLUICE_TOKEN) reads; outside the prefix it is 403; POST /streams answers
// a new stream's own publish and read tokens, each good for its verbs there and nothing
// else; and no token reaches the server's log.
func TestCapabilityTokens(t *testing.T) {
	keyFile := writeKey(t)
	srv := startSluice(t, freeAddr(t), t.TempDir(), "--auth-key-file", keyFile)
	c := newClient(t)
	token := strings.TrimSpace(sluiceOut(t, nil, "token", "--auth-key-file", keyFile, "--prefix", "app/builds/", "--allow", "create,publish,read,close", "--ttl", "1m"))
	url := srv.url + "/streams/app/builds/1"

	r := do(t, c, http.MethodPost, url, []byte("refused\n"))
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("POST without a token: %d, WWW-Authenticate %q; want 401 Bearer", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := do(t, c, http.MethodHead, url, nil, "Authorization", "Bearer "+token); r.status != http.StatusNotFound {
		t.Errorf("HEAD after the refused POST: %d, want 404 (nothing stored)", r.status)
	}
	if r := do(t, c, http.MethodPost, srv.url+"/streams/app/other", []byte("x"), "Authorization", "Bearer "+token); r.status != http.StatusForbidden {
		t.Errorf("POST outside the token's prefix: %d, want 403", r.status)
	}

	input := filepath.Join(t.TempDir(), "build.log")
	os.WriteFile(input, []byte("step 1\nstep 2\n"), 0o644)
	sluiceOut(t, nil, "push", "--token", token, url, input)
	if got := sluiceOut(t, []string{"SLUICE_TOKEN=" + token}, "tail", url); got != "step 1\nstep 2\n" {
		t.Errorf("sluice tail with SLUICE_TOKEN read %q", got)
	}
	if r := do(t, c, http.MethodGet, url+"?token="+token, nil); r.status != http.StatusOK || string(r.body) != "step 1\nstep 2\n" {
		t.Errorf("GET ?token=: %d %q", r.status, r.body)
	}

	anywhere := strings.TrimSpace(sluiceOut(t, []string{"SLUICE_AUTH_KEY_FILE=" + keyFile}, "token", "--prefix", "", "--allow", "create"))
	r = do(t, c, http.MethodPost, srv.url+"/streams", nil, "Authorization", "Bearer "+anywhere)
	var made struct {
		Key          string `json:"key"`
		PublishToken string `json:"publish_token"`
		ReadToken    string `json:"read_token"`
	}
	if err := json.Unmarshal(r.body, &made); r.status != http.StatusCreated || err != nil || made.PublishToken == "" || made.ReadToken == "" {
		t.Fatalf("POST /streams: %d %s (%v); want 201 with the key and its tokens", r.status, r.body, err)
	}
	mine := srv.url + "/streams/" + made.Key
	for _, c2 := range []struct {
		method, url, token string
		body               []byte
		want               int
	}{
		{http.MethodPost, mine, made.PublishToken, []byte("mine\n"), http.StatusOK},
		{http.MethodGet, mine + "?follow=false", made.ReadToken, nil, http.StatusOK},
		{http.MethodGet, mine + "?follow=false", made.PublishToken, nil, http.StatusForbidden},
		{http.MethodPost, mine, made.ReadToken, []byte("no\n"), http.StatusForbidden},
		{http.MethodPost, url, made.PublishToken, []byte("no\n"), http.StatusForbidden},
		{http.MethodDelete, mine + "?purge=true", made.PublishToken, nil, http.StatusForbidden},
	} {
		if r := do(t, c, c2.method, c2.url, c2.body, "Authorization", "Bearer "+c2.token); r.status != c2.want {
			t.Errorf("%s %s with the new stream's token: %d, want %d", c2.method, strings.TrimPrefix(c2.url, srv.url), r.status, c2.want)
		}
	}

	log, _ := os.ReadFile(srv.log)
	for _, secret := range []string{token, anywhere, made.PublishToken, made.ReadToken} {
		if bytes.Contains(log, []byte(secret)) {
			t.Errorf("the server's log holds a token:\n%s", log)
		}
	}
	if bytes.Contains(log, []byte("the server is open")) {
		t.Error("a server with a key warned that it is open")
	}
}

// TestPublicReadAndPublishCredentials: busl's deployment as it is: public reads, and
// writes with HTTP Basic credentials that busltee sends from the URL's user-info.
func TestPublicReadAndPublishCredentials(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir(), "--public-read", "--publish-credentials", "ci:s3cret")
	c := newClient(t)
	url := srv.url + "/streams/job/1"
	if r := do(t, c, http.MethodPost, url, []byte("x")); r.status != http.StatusUnauthorized {
		t.Errorf("POST without the credentials: %d, want 401", r.status)
	}
	withCreds := strings.Replace(url, "http://", "http://ci:s3cret@", 1)
	cmd := exec.Command(sluiceBin, "run", withCreds, "--", "echo", "built")
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sluice run with the URL's user-info: %v\n%s", err, out)
	}
	if r := do(t, c, http.MethodGet, url, nil); r.status != http.StatusOK || string(r.body) != "built\n" {
		t.Errorf("public GET: %d %q, want 200 \"built\\n\"", r.status, r.body)
	}
	if r := do(t, c, http.MethodDelete, url+"?purge=true", nil); r.status != http.StatusUnauthorized {
		t.Errorf("purge without the credentials: %d, want 401", r.status)
	}
}

// TestOpenServerWarns: a server without a key warns at start that anyone may do
// anything, when it listens beyond loopback, and not on loopback.
func TestOpenServerWarns(t *testing.T) {
	const warning = "the server is open"
	addr := freeAddr(t)
	wide := startSluice(t, strings.Replace(addr, "127.0.0.1", "0.0.0.0", 1), t.TempDir())
	wide.cmd.Process.Signal(syscall.SIGTERM)
	wide.waitExit(t, bound)
	if log, _ := os.ReadFile(wide.log); !bytes.Contains(log, []byte(warning)) {
		t.Errorf("an open server on 0.0.0.0 did not warn:\n%s", log)
	}
	local := startSluice(t, freeAddr(t), t.TempDir())
	local.cmd.Process.Signal(syscall.SIGTERM)
	local.waitExit(t, bound)
	if log, _ := os.ReadFile(local.log); bytes.Contains(log, []byte(warning)) {
		t.Errorf("an open server on loopback warned:\n%s", log)
	}
}

// TestTLS: with --tls-cert and --tls-key the server speaks HTTPS, and HTTP/2 to a
// client that offers it; a renewed certificate is served after SIGHUP, without a
// restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	nettest.WriteCert(t, certFile, keyFile, "first")
	addr := freeAddr(t)
	srv := startTLS(t, addr, certFile, keyFile)
	if cn, proto := tlsGet(t, addr); cn != "first" || proto != 2 {
		t.Errorf("GET over TLS: certificate %q over HTTP/%d, want \"first\" over HTTP/2", cn, proto)
	}
	nettest.WriteCert(t, certFile, keyFile, "renewed")
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(bound)
	for {
		cn, _ := tlsGet(t, addr)
		if cn == "renewed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the server still serves the certificate %q", cn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startTLS starts sluice serve on HTTPS and waits until it answers.
func startTLS(t *testing.T, addr, certFile, keyFile string) *proc {
	t.Helper()
	cmd := exec.Command(sluiceBin, "serve", "--addr", addr, "--data-dir", t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = childEnv()
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of sluice on %s:\n%s", addr, log.Bytes())
		}
	})
	deadline := time.Now().Add(bound)
	for {
		if cn, _ := tlsGet(t, addr); cn != "" {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice on https://%s not ready", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tlsGet asks /readyz over a new TLS connection offering HTTP/2, and returns the common
// name of the server's certificate and the HTTP major version, or "" if it failed.
func tlsGet(t *testing.T, addr string) (cn string, proto int) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", 0
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return "", 0
	}
	return resp.TLS.PeerCertificates[0].Subject.CommonName, resp.ProtoMajor
}

// TestNetworkFlags: --require-https, --cors-origins and the per-client limits reach the
// server.
func TestNetworkFlags(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir(), "--require-https", "--cors-origins", "https://ci.example",
		"--rate-limit", "1", "--rate-burst", "100")
	c := newClient(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r := do(t, c, http.MethodGet, srv.url+"/streams/a", nil)
	if r.status/100 != 3 || !strings.HasPrefix(r.header.Get("Location"), "https://") {
		t.Errorf("plain GET with --require-https: %d, Location %q; want a redirect to https", r.status, r.header.Get("Location"))
	}
	if r := do(t, c, http.MethodPost, srv.url+"/streams/a", []byte("x")); r.status != http.StatusForbidden {
		t.Errorf("plain POST with --require-https: %d, want 403", r.status)
	}
	// A browser sends the DELETE only if the preflight allows the origin and the method.
	deleteAllowed := func(origin string) bool {
		h := do(t, c, http.MethodOptions, srv.url+"/streams/a", nil, "Origin", origin,
			"Access-Control-Request-Method", "DELETE").header
		o := h.Get("Access-Control-Allow-Origin")
		return (o == origin || o == "*") && strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE")
	}
	if !deleteAllowed("https://ci.example") {
		t.Error("a preflight of DELETE from the origin of --cors-origins is not allowed")
	}
	if deleteAllowed("https://evil.example") {
		t.Error("a preflight of DELETE from another origin is allowed")
	}

	limited := startSluice(t, freeAddr(t), t.TempDir(), "--rate-limit", "0.5", "--rate-burst", "2")
	statuses := []int{}
	for range 3 {
		r := do(t, c, http.MethodHead, limited.url+"/streams/a", nil)
		statuses = append(statuses, r.status)
		if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if statuses[0] == http.StatusTooManyRequests || statuses[2] != http.StatusTooManyRequests {
		t.Errorf("HEAD thrice with --rate-limit 0.5 --rate-burst 2: %v, want the third 429", statuses)
	}
}

// TestSecurityFlagErrors: flags that cannot work end sluice serve at once, with exit
// status 2 and a line that names them; nothing is served.
func TestSecurityFlagErrors(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "cert.pem"}, "--tls-key"},
		{[]string{"--auth-key-file", short}, "at least 32"},
		{[]string{"--auth-key", strings.Repeat("k", 32), "--auth-key-file", short}, "give one"},
		{[]string{"--publish-credentials", "nocolon"}, "user:password"},
		{[]string{"--rate-limit", "-1"}, "--rate-limit"},
	} {
		cmd := exec.Command(sluiceBin, append([]string{"serve", "--addr", freeAddr(t), "--data-dir", t.TempDir()}, c.args...)...)
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		if code := exitStatus(t, err); code != 2 || !bytes.Contains(out, []byte(c.want)) {
			t.Errorf("sluice serve %v: exit %d, %q; want 2 and a message with %q", c.args, code, out, c.want)
		}
	}
}
