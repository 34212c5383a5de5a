package archivetest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/metrics"
)

// Node is a store with an archive and (unless NoArchiver) an Archiver running over it,
// as sluice serve wires them, with the Archiver's metrics on Registry.
type Node struct {
	Store    *file.Store
	Archiver *sluice.Archiver
	Registry *prometheus.Registry
	stop     func()
}

// Options tune a Node.
type Options struct {
	Retention  time.Duration
	NoArchiver bool // the store archives nothing: a server stopped before it could
}

// NewNode opens the store in dir over archive and starts its Archiver; Stop (or the
// test's end) stops the Archiver, then closes the store.
func NewNode(t testing.TB, dir string, archive sluice.Archive, o Options) *Node {
	t.Helper()
	n := &Node{Registry: prometheus.NewRegistry()}
	store, err := file.Open(dir, file.Options{Archive: archive, Logger: Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	n.Store = store
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if o.NoArchiver {
		close(done)
	} else {
		n.Archiver = sluice.NewArchiver(store, archive, sluice.ArchiverOptions{
			Retention: o.Retention, Logger: Quiet(), Metrics: metrics.NewArchiver(n.Registry),
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		})
		go func() {
			defer close(done)
			if err := n.Archiver.Run(ctx); err != nil {
				t.Errorf("Archiver.Run: %v", err)
			}
		}()
	}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		if err := store.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	}
	t.Cleanup(n.stop)
	return n
}

// Stop stops the Archiver and closes the store; servers over it must be stopped first.
func (n *Node) Stop() { n.stop() }

// Counter returns the value of the counter called name on the node's registry.
func (n *Node) Counter(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := n.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// State returns the stream's live state: whether its live copy exists and whether it
// is archived.
func (n *Node) State(t testing.TB, key string) (live, archived bool) {
	t.Helper()
	lcs, err := n.Store.LiveClosed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, lc := range lcs {
		if lc.Key == key {
			return true, lc.Archived != nil
		}
	}
	return false, false
}

// WaitFor polls cond until it holds, failing the test after 30 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
