package nats

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
)

// appendFrom appends what r yields to h from offset 0 until r ends, as the HTTP
// server's publish loop does with a request body: whatever a read returns (every line
// written since the last read) goes to one Append. stored is called after each Append.
func appendFrom(h sluice.Stream, r io.Reader, stored func(sluice.Info)) error {
	buf := make([]byte, 256<<10)
	var off int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			info, err := h.Append(ctx, off, buf[:n])
			if err != nil {
				return err
			}
			off += int64(n)
			stored(info)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// chunksOf counts the messages of a stream's subject.
func chunksOf(t *testing.T, s *Store, h sluice.Stream, key string) uint64 {
	t.Helper()
	subj := s.subject(key, h.Info().Version)
	si, err := s.js1.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return si.State.Subjects[subj]
}

// TestLingerCoalesces proves issue 6's "small writes are coalesced into chunks (bounded
// size and a short linger) ...; per-chunk overhead stays small for a producer writing
// one line at a time" without giving up Append's "when Append returns, the bytes
// survive a crash of the process": lines written one at a time, a few hundred
// microseconds apart, make a small fraction as many JetStream messages as lines, and
// every length an Append returns is already what another instance reads.
func TestLingerCoalesces(t *testing.T) {
	w := newStore(t, shared, Options{Linger: 20 * time.Millisecond})
	other := newStore(t, shared, Options{})
	key := newKey(t)
	create(t, w, key)
	h := open(t, w, key)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- appendFrom(h, pr, func(info sluice.Info) {
			ho, err := other.Open(ctx, key)
			if err != nil {
				t.Errorf("Open on another instance: %v", err)
				return
			}
			defer ho.Release()
			if got := ho.Info().Length; got < info.Length {
				t.Errorf("Append returned length %d, another instance reads %d", info.Length, got)
			}
		})
	}()
	const lines = 200
	line := append(bytes.Repeat([]byte("x"), 79), '\n')
	var want []byte
	for range lines {
		if _, err := pw.Write(line); err != nil {
			t.Fatal(err)
		}
		want = append(want, line...)
		time.Sleep(300 * time.Microsecond)
	}
	pw.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := chunksOf(t, w, h, key); n > lines/4 {
		t.Errorf("%d lines written one at a time made %d chunks, want at most %d", lines, n, lines/4)
	}
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := follow(t, open(t, other, key), 0); !bytes.Equal(got, want) {
		t.Fatalf("another instance reads %d bytes, want the %d written, identical", len(got), len(want))
	}
}

// TestLargeWriteSplit proves "large ones split below JetStream's max payload": a chunk
// size above the server's max payload (1 MiB) is brought below it, so a 3 MiB write is
// stored whole, in messages the server accepts, and reads back identical elsewhere.
func TestLargeWriteSplit(t *testing.T) {
	w := newStore(t, shared, Options{ChunkSize: 8 << 20})
	if max := int(w.nc.MaxPayload()); w.opts.ChunkSize >= max {
		t.Fatalf("chunk size %d, server's max payload %d", w.opts.ChunkSize, max)
	}
	key := newKey(t)
	create(t, w, key)
	h := open(t, w, key)
	want := make([]byte, 3<<20)
	for i := range want {
		want[i] = byte(i * 13)
	}
	if info := mustAppend(t, h, 0, want); info.Length != int64(len(want)) {
		t.Fatalf("length %d after one write of %d", info.Length, len(want))
	}
	if n := chunksOf(t, w, h, key); n != 4 {
		t.Errorf("3 MiB stored in %d messages, want 4 below 1 MiB each", n)
	}
	if _, err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	other := newStore(t, shared, Options{})
	if got := follow(t, open(t, other, key), 0); !bytes.Equal(got, want) {
		t.Fatalf("another instance reads %d bytes, want the %d written, identical", len(got), len(want))
	}
}

// TestLargeBatchCommitWaits proves that the commit of a large atomic batch waits as long
// as JetStream takes to store and replicate it, not a request's deadline: with
// RequestTimeout at 100 ms, below what 16 MiB take (seconds with -race), the write is
// stored and acknowledged. Before, a 10 MiB append in cluster mode failed after 2 s (a
// 500) on a busy machine; on an idle one the commit is quick enough either way.
func TestLargeBatchCommitWaits(t *testing.T) {
	w := newStore(t, shared, Options{})
	w.opts.RequestTimeout = 100 * time.Millisecond // after Open; requests that time out are retried
	key := newKey(t)
	create(t, newStore(t, shared, Options{}), key)
	h := open(t, w, key)
	want := bytes.Repeat([]byte("sixteen mebibytes, in one write\n"), 16<<20/32)
	if info := mustAppend(t, h, 0, want); info.Length != int64(len(want)) {
		t.Fatalf("length %d after one write of %d", info.Length, len(want))
	}
	other := newStore(t, shared, Options{})
	if info := open(t, other, key).Info(); info.Length != int64(len(want)) {
		t.Fatalf("another instance sees length %d, want %d", info.Length, len(want))
	}
}

// TestWritesAcrossInstancesNeverInterleave proves Write's "no other append comes
// between its bytes" across instances: writers on two instances, with chunks of 8
// bytes, so that every write is an atomic batch of several messages, each find every
// one of their writes whole, once, in the stream, and a reader on a third instance
// reads the same bytes.
func TestWritesAcrossInstancesNeverInterleave(t *testing.T) {
	a, b := newStore(t, shared, Options{ChunkSize: 8}), newStore(t, shared, Options{ChunkSize: 8})
	key := newKey(t)
	create(t, a, key)
	rec := func(w, i int) []byte {
		return fmt.Appendf(nil, "<%d.%02d:%s>", w, i, strings.Repeat(string(rune('a'+w)), 40))
	}
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			h := open(t, s, key)
			for i := range 25 {
				if _, err := h.Write(ctx, sluice.Write{Data: rec(w, i)}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := open(t, a, key).Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := follow(t, open(t, newStore(t, shared, Options{}), key), 0)
	want := 0
	for w := range 4 {
		for i := range 25 {
			if n := bytes.Count(got, rec(w, i)); n != 1 {
				t.Fatalf("write %d.%d found %d times, want once whole", w, i, n)
			}
			want += len(rec(w, i))
		}
	}
	if len(got) != want {
		t.Fatalf("stream of %d bytes, want %d", len(got), want)
	}
}
