package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/metrics"
)

// archiveNode is an instance as sluice serve wires it: a Store whose closes feed an
// Archiver, with the Archiver's metrics on reg.
type archiveNode struct {
	s   *Store
	reg *prometheus.Registry
}

func newArchiveNode(t *testing.T, archive sluice.Archive) *archiveNode {
	var opts Options
	t.Helper()
	n := &archiveNode{reg: prometheus.NewRegistry()}
	opts.Archive = archive
	n.s = newStore(t, shared, opts)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := sluice.NewArchiver(n.s, archive, sluice.ArchiverOptions{
		Logger: quiet, Metrics: metrics.NewArchiver(n.reg), MinBackoff: 50 * time.Millisecond,
		Leaser: n.s, Rescan: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // before the store's Close
	return n
}

func (n *archiveNode) uploads(t *testing.T) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "sluice_archive_uploads_started_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// waitMeta waits until the stream's meta entry satisfies ok.
func waitMeta(t *testing.T, s *Store, key string, ok func(meta) bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		m, _, err := s.meta(ctx, key)
		if err == nil && ok(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("meta of %s still %+v (%v)", key, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestArchiveOnceAcrossInstances proves issue 6's "exactly one instance uploads each
// closed stream, then purges its subject": two instances, each with an Archiver and a
// scan for orphaned work, archive a stream closed through one of them once; its subject
// keeps only the close marker; and it stays readable on every instance, from the
// archive, including through a handle opened before its live bytes went. A purge then
// deletes the archived object too.
func TestArchiveOnceAcrossInstances(t *testing.T) {
	archive, err := file.OpenArchive(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := newArchiveNode(t, archive)
	b := newArchiveNode(t, archive)
	key := newKey(t)
	create(t, a.s, key)
	h := open(t, a.s, key)
	want := bytes.Repeat([]byte("archived line\n"), 30000)
	mustAppend(t, h, 0, want)
	early := open(t, b.s, key)
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitMeta(t, b.s, key, func(m meta) bool { return m.Removed })
	if n := a.uploads(t) + b.uploads(t); n != 1 {
		t.Errorf("%v uploads of one closed stream by two instances, want 1", n)
	}
	// RemoveLive marks the stream removed, then purges its subject down to the marker.
	subj := a.s.subject(key, h.Info().Version)
	for deadline := time.Now().Add(failAfter); ; time.Sleep(20 * time.Millisecond) {
		si, err := a.s.js1.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatal(err)
		}
		if n := si.State.Subjects[subj]; n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("subject holds %d messages after removal, want 1 (the close marker)", n)
		}
	}
	for name, st := range map[string]sluice.Stream{"early handle": early, "new handle": open(t, b.s, key)} {
		if got := follow(t, st, 0); !bytes.Equal(got, want) {
			t.Errorf("%s reads %d bytes from the archive, want %d identical", name, len(got), len(want))
		}
		if info := st.Info(); !info.Closed || info.Length != int64(len(want)) {
			t.Errorf("%s Info %+v", name, info)
		}
	}
	if err := b.s.Purge(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Stat(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("archived object after purge: %v, want ErrNotFound", err)
	}
}

// TestArchiveTakeover proves "a crashed uploader's work is picked up by another
// instance": an instance closes a stream, takes its archive lease, and dies (its NATS
// connection gone) before uploading; another instance, whose Archiver started before
// the close and so learns of it only by listing the store every Rescan, leaves the
// stream alone while the lease holds, then archives it once the lease lapses.
func TestArchiveTakeover(t *testing.T) {
	archive, err := file.OpenArchive(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alive := newArchiveNode(t, archive)
	const ttl = 500 * time.Millisecond
	dead := newStore(t, shared, Options{})
	key := newKey(t)
	create(t, dead, key)
	h := open(t, dead, key)
	want := []byte("the closer died before uploading\n")
	mustAppend(t, h, 0, want)
	// The closing instance's Archiver takes the lease as the stream closes; here, just
	// before, so that the other's rescans cannot take it first.
	if ok, err := dead.Lease(ctx, key, ttl); !ok || err != nil {
		t.Fatalf("Lease by the closing instance = %v, %v", ok, err)
	}
	closed := time.Now()
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := alive.s.kv.Get(ctx, leaseKey(key))
	if err != nil {
		t.Fatalf("no archive lease after the close: %v", err)
	}
	var l lease
	if err := json.Unmarshal(e.Value(), &l); err != nil || l.Owner != dead.id {
		t.Fatalf("lease %s (%v), want one held by the closing instance %s", e.Value(), err, dead.id)
	}
	dead.nc.Close()
	waitMeta(t, alive.s, key, func(m meta) bool { return m.Archived != nil })
	if d := time.Since(closed); d < ttl {
		t.Errorf("archived %v after the close, while the dead instance's lease of %v held", d, ttl)
	}
	if n := alive.uploads(t); n != 1 {
		t.Errorf("%v uploads by the surviving instance, want 1", n)
	}
	rc, err := archive.Open(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, want) {
		t.Fatalf("archived object %q, want %q", got, want)
	}
}
