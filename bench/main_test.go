package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs a real Sluice server (file store in a temp dir) on a real loopback
// listener, wrapped by wrap if not nil, and returns its base URL. It is shut down when
// the test ends.
func startServer(t *testing.T, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	store, err := file.Open(t.TempDir(), file.Options{SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := sluicehttp.NewServer(store, sluicehttp.Config{
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShutdownGrace: 5 * time.Second,
		ProbeInterval: 100 * time.Millisecond, // so that vanished followers are let go at once
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	return url
}

// small is a quick configuration for tests: followers idle only briefly.
func small(url string, followers int) Config {
	return Config{URL: url, Followers: followers, Lines: 100, IdleWait: 50 * time.Millisecond,
		DrainTimeout: 20 * time.Second, Timeout: time.Minute}
}
