package client

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/file"
	sluicehttp "github.com/sluicehq/sluice/http"
)

// TestMain fails the package if a test leaves a goroutine behind: a Writer's sender, a
// Reader's connection, or an idle connection of a client that was not released.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a real server on a real loopback listener over a file store in a temp
// dir: the client is tested against the server it is written for, not a mock of it.
type testServer struct {
	*sluicehttp.Server
	url string // http://127.0.0.1:port
}

// newTestServer starts a server with its default configuration over a file store with
// opts; it is shut down gracefully when the test ends.
func newTestServer(t testing.TB, opts file.Options) *testServer {
	t.Helper()
	store, err := file.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := sluicehttp.NewServer(store, sluicehttp.Config{Logger: slog.New(slog.DiscardHandler), ShutdownGrace: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		t.Fatal(err)
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
		http.DefaultClient.CloseIdleConnections() // the tests' own requests
	})
	return &testServer{Server: srv, url: "http://" + ln.Addr().String()}
}
