package client

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
)

// TestRetryAfter proves the client honours Retry-After: it reads seconds and HTTP dates
// (bounded), and a Reader whose own backoff is a millisecond, against a server that lets
// one request a second in (429 with Retry-After beyond), reads within two attempts in a
// row, which, without waiting as told, it would spend at once.
func TestRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "junk": 0, "99999": maxRetryAfter,
		time.Now().Add(time.Hour).UTC().Format(http.TimeFormat): maxRetryAfter} {
		if got := parseRetryAfter(v); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	store, err := file.Open(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store.Create(context.Background(), "limited", sluice.CreateOptions{Data: []byte("held back, then read\n"), Closed: true})
	srv := sluicehttp.NewServer(store, sluicehttp.Config{Logger: slog.New(slog.DiscardHandler), RateLimit: 1, RateBurst: 1})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; store.Close() })
	url := "http://" + ln.Addr().String() + "/streams/limited"
	if resp, err := http.Head(url); err != nil || resp.StatusCode != http.StatusOK { // takes the one place of this second
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	r := NewReader(url, ReaderOptions{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxAttempts: 2})
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "held back, then read\n" {
		t.Fatalf("read %q, %v; want the stream after waiting as told", b, err)
	}
}
