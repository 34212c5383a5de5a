package http

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
)

// TestRateLimit proves the per-address request rate: past its burst a client gets 429
// with Retry-After, and stores nothing; another address (as the balancer tells it, with
// TrustProxy) is not held back; the balancer's probes never are.
func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, Config{RateLimit: 1, RateBurst: 3, TrustProxy: true}, file.Options{})
	from := func(addr string) []string { return []string{"X-Forwarded-For", "203.0.113.9, " + addr} }
	for i := range 3 {
		resp, body := call(t, http.MethodPut, ts.streamURL("r"+strconv.Itoa(i)), nil, from("198.51.100.1")...)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("request %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, _ := call(t, http.MethodPut, ts.streamURL("over"), nil, from("198.51.100.1")...)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if _, err := ts.store.Open(t.Context(), "over"); err == nil {
		t.Fatal("a refused request made its stream")
	}
	if resp, _ := call(t, http.MethodPut, ts.streamURL("other"), nil, from("198.51.100.2")...); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
	for range 5 {
		if resp, _ := call(t, http.MethodGet, ts.url+"/readyz", nil, from("198.51.100.1")...); resp.StatusCode != http.StatusOK {
			t.Fatalf("a probe past the limit: %d", resp.StatusCode)
		}
	}
}

// TestClientRequestsLimit proves the per-address bound on requests at once, followers
// included until they end: with two followers connected, a third request is refused
// with 429; once one ends, the next is admitted.
func TestClientRequestsLimit(t *testing.T) {
	ts := newTestServer(t, Config{MaxClientRequests: 2}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "a")
	subCreate(t, ts, "b")
	fa := subGet(t, ctx, ts, "a", "", nil)
	subGet(t, ctx, ts, "b", "", nil)
	resp, _ := call(t, http.MethodHead, ts.streamURL("a"), nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third request with two followers: %d, want 429", resp.StatusCode)
	}
	st, err := ts.store.Open(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	st.Write(ctx, sluice.Write{Data: []byte("end"), Close: true}) // follower a ends
	st.Release()
	io.ReadAll(fa.Body)
	resEventually(t, 10*time.Second, "the ended follower's place given back", func() (bool, string) {
		resp, _ := call(t, http.MethodHead, ts.streamURL("a"), nil)
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// TestRequireHTTPS proves busl's ENFORCE_HTTPS: plain HTTP reads are redirected to
// https, without their token; writes are refused, storing nothing; what came over https
// (as the balancer says) is served; probes answer either way.
func TestRequireHTTPS(t *testing.T) {
	ts := newTestServer(t, Config{RequireHTTPS: true, TrustProxy: true}, file.Options{})
	resp, _ := call(t, http.MethodGet, ts.streamURL("x")+"?offset=3&token=SECRET", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(loc, "https://") || strings.Contains(loc, "SECRET") || !strings.Contains(loc, "offset=3") {
		t.Fatalf("plain GET: %d, Location %q; want 308 to https, offset kept, token not", resp.StatusCode, loc)
	}
	resp, _ = call(t, http.MethodPost, ts.streamURL("x"), strings.NewReader("data"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("plain POST: %d, want 403", resp.StatusCode)
	}
	if _, err := ts.store.Open(t.Context(), "x"); err == nil {
		t.Fatal("a refused POST stored its stream")
	}
	resp, body := call(t, http.MethodPost, ts.streamURL("x"), strings.NewReader("data"), "X-Forwarded-Proto", "https")
	wantStatus(t, resp, body, http.StatusOK)
	if resp, _ := call(t, http.MethodGet, ts.url+"/health", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/health over plain HTTP: %d", resp.StatusCode)
	}
}
