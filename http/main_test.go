package http

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/file"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a real Server on a real loopback listener over a file store in a temp dir.
type testServer struct {
	*Server
	store *file.Store
	url   string // http://127.0.0.1:port
	stop  func()
}

// newTestServer starts a server; it is shut down gracefully when the test ends. Zero cfg
// fields get the server's defaults; the store syncs every append unless opts say otherwise.
func newTestServer(t testing.TB, cfg Config, opts file.Options) *testServer {
	t.Helper()
	store, err := file.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	srv := NewServer(store, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ts := &testServer{Server: srv, store: store, url: "http://" + ln.Addr().String()}
	stopped := false
	ts.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	}
	t.Cleanup(ts.stop)
	return ts
}
