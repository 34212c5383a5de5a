package nats

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/natstest"
)

// shared is the three-node JetStream cluster most tests use; tests that kill nodes start
// their own.
var shared *natstest.Cluster

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-nats-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared, err = natstest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Shutdown()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newStore connects a new client (a Sluice "instance") to c and opens a Store on it;
// both are closed at test end.
func newStore(t *testing.T, c *natstest.Cluster, opts Options) *Store {
	t.Helper()
	return openStore(t, c, opts)
}

// newStoreTB is newStore on the shared cluster, for benchmarks.
func newStoreTB(tb testing.TB, opts Options) *Store {
	tb.Helper()
	return openStore(tb, shared, opts)
}

func openStore(t testing.TB, c *natstest.Cluster, opts Options) *Store {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
