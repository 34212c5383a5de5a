package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// createOptions: "Create makes a stream as opts say and returns its Info ... if it was
// made with a Config that does not match opts.Config, or it is closed and opts asks for
// an open one or the other way round, Create returns its Info and ErrConfigMismatch",
// and the first bytes and the close come with the creation.
func createOptions(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	cfg := sluice.Config{ContentType: "text/plain; charset=utf-8", TTL: time.Hour}
	info, created, err := s.Create(ctx, key, sluice.CreateOptions{Config: cfg, Data: []byte("first bytes\n")})
	if err != nil || !created || info.Length != 12 || info.Closed || info.Config != cfg || info.Version == "" {
		t.Fatalf("Create with options = %+v, %v, %v", info, created, err)
	}
	h := MustOpen(t, s, key)
	if got, info := readAll(t, h); string(got) != "first bytes\n" || info.Config != cfg {
		t.Fatalf("Read = %q, %+v; want the first bytes and the config", got, info)
	}
	same := sluice.Config{ContentType: "TEXT/PLAIN", TTL: time.Hour} // parameters and case aside
	if info, created, err := s.Create(ctx, key, sluice.CreateOptions{Config: same}); err != nil || created || info.Length != 12 {
		t.Fatalf("Create with a matching config = %+v, %v, %v; want the stream, false, nil", info, created, err)
	}
	for _, other := range []sluice.CreateOptions{
		{Config: sluice.Config{ContentType: "application/json", TTL: time.Hour}},
		{Config: sluice.Config{ContentType: "text/plain", TTL: 2 * time.Hour}},
		{Config: sluice.Config{ContentType: "text/plain", ExpiresAt: time.Now().Add(time.Hour)}},
		{Config: cfg, Closed: true},
	} {
		info, created, err := s.Create(ctx, key, other)
		if !errors.Is(err, sluice.ErrConfigMismatch) || created || info.Config != cfg || info.Length != 12 {
			t.Fatalf("Create(%+v) over %+v = %+v, %v, %v; want the stream as it is, ErrConfigMismatch", other, cfg, info, created, err)
		}
	}

	closedKey := newKey(t)
	info, created, err = s.Create(ctx, closedKey, sluice.CreateOptions{Data: []byte("all of it"), Closed: true})
	if err != nil || !created || !info.Closed || info.Length != 9 {
		t.Fatalf("Create closed = %+v, %v, %v", info, created, err)
	}
	if got, info := readAll(t, MustOpen(t, s, closedKey)); string(got) != "all of it" || !info.Closed {
		t.Fatalf("closed at creation: Read = %q, %+v", got, info)
	}
	if _, _, err := s.Create(ctx, closedKey, sluice.CreateOptions{Closed: true}); err != nil {
		t.Fatalf("Create closed again = %v, want nil", err)
	}
}

// writeRules: Write "appends w at the stream's end, whatever its length ... New bytes
// for a closed stream are ErrClosed; a close of a closed stream is not an error.
// Nothing is stored on error", and a close with bytes is one step.
func writeRules(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{MaxStreamSize: 16})
	key := newKey(t)
	Create(t, s, key)
	w, r := MustOpen(t, s, key), MustOpen(t, s, key)
	_, _, changed, _ := r.Read(ctx, nil, 0)
	steps := []struct {
		name    string
		w       sluice.Write
		wantErr error
		wantLen int64
	}{
		{"first", sluice.Write{Data: []byte("hello ")}, nil, 6},
		{"at the end", sluice.Write{Data: []byte("world")}, nil, 11},
		{"too large", sluice.Write{Data: []byte("and then some")}, sluice.ErrTooLarge, 11},
		{"nothing", sluice.Write{}, nil, 11},
		{"last bytes and close", sluice.Write{Data: []byte("!"), Close: true}, nil, 12},
		{"close again", sluice.Write{Close: true}, nil, 12},
		{"bytes after close", sluice.Write{Data: []byte("?")}, sluice.ErrClosed, 12},
		{"bytes and close after close", sluice.Write{Data: []byte("?"), Close: true}, sluice.ErrClosed, 12},
	}
	for _, st := range steps {
		info, err := w.Write(ctx, st.w)
		if !errors.Is(err, st.wantErr) || info.Length != st.wantLen {
			t.Fatalf("%s: Write = %+v, %v; want length %d, %v", st.name, info, err, st.wantLen, st.wantErr)
		}
	}
	// The reader saw the last bytes and the close in one change: never the stream closed
	// short of its end, nor its end open.
	for {
		select {
		case <-changed:
		case <-time.After(30 * time.Second):
			t.Fatal("reader not woken by the writes")
		}
		_, info, next, err := r.Read(ctx, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if info.Closed != (info.Length == 12) {
			t.Fatalf("a reader saw %+v: closed short of the end, or the end open", info)
		}
		if info.Closed {
			// A Read may return fewer bytes than asked (one JetStream chunk of 4 bytes).
			if b, _ := readAll(t, r); string(b) != "hello world!" {
				t.Fatalf("Read = %q", b)
			}
			return
		}
		changed = next
	}
}

// concurrentWrites: "concurrent writers each add their bytes once, in some order": 8
// writers of 20 writes each, some larger than a JetStream chunk; each write's bytes are
// found whole, once, in the stream.
func concurrentWrites(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	Create(t, s, key)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			h, err := s.Open(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Release()
			for j := range 20 {
				rec := fmt.Sprintf("<%d.%d:%s>", i, j, bytes.Repeat([]byte{'a' + byte(i)}, j*3))
				if _, err := h.Write(ctx, sluice.Write{Data: []byte(rec)}); err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, _ := readAll(t, MustOpen(t, s, key))
	total := 0
	for i := range 8 {
		for j := range 20 {
			rec := fmt.Sprintf("<%d.%d:%s>", i, j, bytes.Repeat([]byte{'a' + byte(i)}, j*3))
			if n := bytes.Count(got, []byte(rec)); n != 1 {
				t.Fatalf("write %d.%d found %d times in the stream, want once whole", i, j, n)
			}
			total += len(rec)
		}
	}
	if len(got) != total {
		t.Fatalf("stream of %d bytes, want the %d the writes carried", len(got), total)
	}
}
