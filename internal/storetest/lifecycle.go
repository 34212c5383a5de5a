package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// forks: a fork reads its source's bytes below its base, then its own; what the source
// gets after the fork is not the fork's; a fork of a fork reads down the chain; a
// source that forks read is soft-deleted by Purge (ErrGone for Open, Create and Purge,
// its bytes still read by its forks), and goes for good with its last fork, up the
// chain; a fork needs its source to exist, at the version it names, reaching its base.
func forks(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	src, f1, f2 := newKey(t), newKey(t), newKey(t)
	info, _, err := s.Create(ctx, src, sluice.CreateOptions{Config: sluice.Config{ContentType: "text/plain"}, Data: []byte("source ")})
	if err != nil {
		t.Fatal(err)
	}
	fork := func(key, source string, si sluice.Info, base int64, data string) sluice.Info {
		t.Helper()
		cfg := sluice.Config{ContentType: "text/plain", Fork: &sluice.Fork{Source: source, SourceVersion: si.Version, Base: base, At: -1}}
		fi, created, err := s.Create(ctx, key, sluice.CreateOptions{Config: cfg, Data: []byte(data)})
		if err != nil || !created || fi.Length != base+int64(len(data)) {
			t.Fatalf("fork %s of %s at %d = %+v, %v, %v", key, source, base, fi, created, err)
		}
		return fi
	}
	fi := fork(f1, src, info, 7, "fork ")
	MustWrite(t, MustOpen(t, s, src), "more source")
	MustWrite(t, MustOpen(t, s, f1), "own")
	want := map[string]string{src: "source more source", f1: "source fork own"}
	f2i := fork(f2, f1, MustOpen(t, s, f1).Info(), 12, "two")
	want[f2] = "source fork two"
	for key, w := range want {
		if got, _ := readAll(t, MustOpen(t, s, key)); string(got) != w {
			t.Fatalf("%s reads %q, want %q", key, got, w)
		}
	}
	if fi.Config.Fork.Source != src || f2i.Config.Fork.Base != 12 {
		t.Fatalf("fork configs %+v, %+v", fi.Config.Fork, f2i.Config.Fork)
	}

	// The chain's head and middle are deleted: soft, their forks read on.
	for _, key := range []string{src, f1} {
		if err := s.Purge(ctx, key); err != nil {
			t.Fatalf("Purge(%s) = %v", key, err)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, sluice.ErrGone) {
			t.Fatalf("Open of a soft-deleted stream = %v, want ErrGone", err)
		}
		if _, _, err := s.Create(ctx, key, sluice.CreateOptions{}); !errors.Is(err, sluice.ErrGone) {
			t.Fatalf("Create over a soft-deleted stream = %v, want ErrGone", err)
		}
		if err := s.Purge(ctx, key); !errors.Is(err, sluice.ErrGone) {
			t.Fatalf("Purge again = %v, want ErrGone", err)
		}
	}
	if got, _ := readAll(t, MustOpen(t, s, f2)); string(got) != "source fork two" {
		t.Fatalf("the fork of soft-deleted streams reads %q", got)
	}
	// The last fork goes: the whole chain goes.
	if err := s.Purge(ctx, f2); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{f2, f1, src} {
		eventually(t, key+" to go", func() bool {
			_, err := s.Open(ctx, key)
			return errors.Is(err, sluice.ErrNotFound)
		})
	}
	if _, created, err := s.Create(ctx, src, sluice.CreateOptions{}); err != nil || !created {
		t.Fatalf("Create after the chain went = %v, %v", created, err)
	}

	// A fork needs its source, at its version, reaching its base.
	for name, f := range map[string]*sluice.Fork{
		"unknown source":  {Source: newKey(t), SourceVersion: "v", At: -1},
		"another version": {Source: src, SourceVersion: info.Version, At: -1},
	} {
		if _, _, err := s.Create(ctx, newKey(t), sluice.CreateOptions{Config: sluice.Config{Fork: f}}); !errors.Is(err, sluice.ErrNotFound) {
			t.Errorf("fork of an %s = %v, want ErrNotFound", name, err)
		}
	}
	cur := MustOpen(t, s, src).Info()
	beyond := &sluice.Fork{Source: src, SourceVersion: cur.Version, Base: cur.Length + 1, At: -1}
	if _, _, err := s.Create(ctx, newKey(t), sluice.CreateOptions{Config: sluice.Config{Fork: beyond}}); !errors.Is(err, sluice.ErrGap) {
		t.Errorf("fork beyond its source's length = %v, want ErrGap", err)
	}
}

// expiry: a stream with a TTL lives while it is read or written, and expires (Open is
// ErrNotFound, Create makes it anew) once it has not been for its TTL; one with an
// expiry time expires then, however busy; Info alone (HEAD) renews nothing.
func expiry(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	ttl, at := newKey(t), newKey(t)
	const d = 400 * time.Millisecond
	if _, _, err := s.Create(ctx, ttl, sluice.CreateOptions{Config: sluice.Config{TTL: d}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, at, sluice.CreateOptions{Config: sluice.Config{ExpiresAt: time.Now().Add(2 * d)}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 3*d {
		h, err := s.Open(ctx, ttl)
		if err != nil {
			t.Fatalf("a stream read every %v with a TTL of %v expired after %v: %v", d/4, d, time.Since(start), err)
		}
		h.Read(ctx, make([]byte, 8), 0)
		h.Release()
		time.Sleep(d / 4)
	}
	if _, err := s.Open(ctx, at); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open past the expiry time = %v, want ErrNotFound", err)
	}
	h := MustOpen(t, s, ttl)
	time.Sleep(d + d/2) // only Info, as a HEAD does
	h.Info()
	h.Release()
	if _, err := s.Open(ctx, ttl); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open after the TTL with no read or write = %v, want ErrNotFound", err)
	}
	if _, created, err := s.Create(ctx, ttl, sluice.CreateOptions{Config: sluice.Config{ContentType: "text/plain"}}); err != nil || !created {
		t.Fatalf("Create over an expired stream = %v, %v; want a new stream", created, err)
	}
}

// MustWrite appends p at the end of h and fails the test on any error.
func MustWrite(t testing.TB, h sluice.Stream, p string) sluice.Written {
	t.Helper()
	w, err := h.Write(context.Background(), sluice.Write{Data: []byte(p)})
	if err != nil {
		t.Fatalf("Write(%q): %v", p, err)
	}
	return w
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
