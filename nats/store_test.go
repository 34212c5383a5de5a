package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/natstest"
	"github.com/sluicehq/sluice/internal/storetest"
)

// failAfter bounds every wait; nothing waits this long unless a bug hangs it.
const failAfter = 30 * time.Second

var ctx = context.Background()

var keySeq int

// newKey returns a key no other test uses, in a cluster shared by all tests.
func newKey(t *testing.T) string {
	keySeq++
	return fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "-"), keySeq, rand.IntN(1<<30))
}

// Helpers shared with the other stores' tests.
var (
	create     = storetest.Create     // makes a key, failing the test unless it is new
	open       = storetest.MustOpen   // a handle, released when the test ends
	mustAppend = storetest.MustAppend // fails the test on any error
)

// follow reads h from off as a follower does, waiting on the changed channel, until the
// stream is closed and read to its end; it returns the bytes.
func follow(t *testing.T, h sluice.Stream, off int64) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	var got []byte
	deadline := time.After(failAfter)
	for {
		b, info, changed, err := h.Read(context.Background(), buf, off)
		if err != nil {
			t.Fatalf("Read at %d: %v", off, err)
		}
		got, off = append(got, b...), off+int64(len(b))
		if len(b) > 0 {
			continue
		}
		if info.Closed && off == info.Length {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("follower stuck at %d of %+v", off, info)
		}
	}
}

// TestCreateOpenPurgeVersion proves "Create ... reports whether the stream is new; an
// existing stream is left as it is", "Open returns ... ErrNotFound" for unknown keys, and
// "Purge deletes a stream ... ending its followers' reads with ErrNotFound, so that the
// key is free for a new stream", whose Version differs, across two instances.
func TestCreateOpenPurgeVersion(t *testing.T) {
	a, b := newStore(t, shared, Options{}), newStore(t, shared, Options{})
	key := newKey(t)
	if _, err := a.Open(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open(unknown) = %v, want ErrNotFound", err)
	}
	if err := a.Purge(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Purge(unknown) = %v, want ErrNotFound", err)
	}
	create(t, a, key)
	if _, created, err := b.Create(ctx, key, sluice.CreateOptions{}); err != nil || created {
		t.Fatalf("second Create on other instance = %v, %v; want false, nil", created, err)
	}
	ha := open(t, a, key)
	mustAppend(t, ha, 0, []byte("first life"))
	v1 := ha.Info().Version
	if v1 == "" {
		t.Fatal("empty version")
	}
	hb := open(t, b, key)
	if info := hb.Info(); info.Version != v1 || info.Length != 10 {
		t.Fatalf("other instance Info %+v, want version %q length 10", info, v1)
	}
	// A follower on b, waiting at the end, is ended by a purge made through a.
	_, _, changed, err := hb.Read(context.Background(), make([]byte, 64), 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Purge(ctx, key); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(failAfter):
		t.Fatal("follower on the other instance not woken by the purge")
	}
	if _, _, _, err := hb.Read(context.Background(), make([]byte, 64), 0); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Read after purge = %v, want ErrNotFound", err)
	}
	if _, err := hb.Append(ctx, 10, []byte("x")); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Append by stale handle after purge = %v, want ErrNotFound", err)
	}
	if _, err := b.Open(ctx, key); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Open after purge = %v, want ErrNotFound", err)
	}
	create(t, b, key)
	h2 := open(t, a, key)
	if info := h2.Info(); info.Version == v1 || info.Length != 0 || info.Closed {
		t.Fatalf("new stream of a purged key: %+v (old version %q)", info, v1)
	}
}

// TestFollowAcrossInstances proves that bytes published through one instance reach
// followers on another, woken through the changed channel ("a channel that is closed
// when the stream changes after it"), and that followers cost JetStream nothing: an
// instance has one consumer, however many streams and followers it serves.
func TestFollowAcrossInstances(t *testing.T) {
	// Names of its own: the count is of every consumer of the JetStream stream, and
	// another test's instance recreating its ordered consumer adds one for a while.
	opts := ownNames(t, "follow")
	pub, sub := newStore(t, shared, opts), newStore(t, shared, opts)
	// The cluster's count lags a consumer's creation: wait for the instances' two.
	if n := consumers(t, sub, 2); n != 2 {
		t.Fatalf("%d JetStream consumers with two instances open, want one each", n)
	}
	key := newKey(t)
	create(t, pub, key)
	hp := open(t, pub, key)
	want := bytes.Repeat([]byte("line of output\n"), 20000) // 300 KB
	var wg sync.WaitGroup
	got := make([][]byte, 5)
	for i := range got {
		h := open(t, sub, key)
		h.Read(context.Background(), nil, 0) // starts following before any byte exists
		wg.Go(func() { got[i] = follow(t, h, 0) })
	}
	other := newKey(t)
	create(t, pub, other)
	open(t, sub, other).Read(context.Background(), nil, 0)
	for off := 0; off < len(want); off += 1000 {
		mustAppend(t, hp, int64(off), want[off:min(off+1000, len(want))])
	}
	if _, err := hp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, g := range got {
		if !bytes.Equal(g, want) {
			t.Errorf("follower %d got %d bytes, want %d identical", i, len(g), len(want))
		}
	}
	// Counted once the followers have their bytes: a consumer made for them would be
	// older than that.
	if n := consumers(t, sub, 0); n != 2 {
		t.Errorf("%d JetStream consumers with 6 followers of 2 streams on one instance, want 2 (one per instance)", n)
	}
}

// ownNames returns Options naming a JetStream stream, subjects and bucket no other
// test uses, deleted at test end, for tests that count what the whole stream holds.
func ownNames(t *testing.T, name string) Options {
	t.Helper()
	n := rand.IntN(1 << 30)
	opts := Options{
		Stream: fmt.Sprintf("%s_%d", strings.ToUpper(name), n),
		Prefix: fmt.Sprintf("%s%d.data", name, n),
		Bucket: fmt.Sprintf("%s_%d", name, n),
	}
	t.Cleanup(func() {
		nc, err := nats.Connect(shared.URLs())
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		js.DeleteStream(ctx, opts.Stream)
		js.DeleteStream(ctx, opts.Stream+"_OPEN")
		js.DeleteKeyValue(ctx, opts.Bucket)
	})
	return opts
}

// consumers counts the consumers of the store's JetStream stream, once the count
// reaches atLeast (or failAfter has passed).
func consumers(t *testing.T, s *Store, atLeast int) int {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		info, err := s.js1.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Consumers; n >= atLeast || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRacingWriters proves "two instances receiving publishes for the same key ... must
// never interleave or duplicate bytes": two instances each resend the same bytes from
// offset 0 in different piece sizes, concurrently; the stream holds each byte once.
func TestRacingWriters(t *testing.T) {
	a, b := newStore(t, shared, Options{}), newStore(t, shared, Options{})
	key := newKey(t)
	create(t, a, key)
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		h := open(t, s, key)
		piece := 3000 + 7777*i
		wg.Go(func() {
			for off := 0; off < len(want); off += piece {
				if _, err := h.Append(ctx, int64(off), want[off:min(off+piece, len(want))]); err != nil {
					t.Errorf("writer %d at %d: %v", i, off, err)
					return
				}
			}
			if _, err := h.Close(ctx); err != nil {
				t.Errorf("writer %d close: %v", i, err)
			}
		})
	}
	wg.Wait()
	c := newStore(t, shared, Options{})
	if got := follow(t, open(t, c, key), 0); !bytes.Equal(got, want) {
		t.Fatalf("stream holds %d bytes, want the %d written, once each", len(got), len(want))
	}
}

// TestResumeWithoutScanning proves "finding the chunk that holds offset N must not read
// the stream from its start": a reader on a fresh instance starting in the middle of a
// stream of 400 chunks (interleaved with another stream's) fetches O(log n) messages.
func TestResumeWithoutScanning(t *testing.T) {
	w := newStore(t, shared, Options{ChunkSize: 1024})
	key, noise := newKey(t), newKey(t)
	create(t, w, key)
	create(t, w, noise)
	h, hn := open(t, w, key), open(t, w, noise)
	want := make([]byte, 400*1024)
	for i := range want {
		want[i] = byte(i * 7)
	}
	for off := 0; off < len(want); off += 4096 {
		mustAppend(t, h, int64(off), want[off:off+4096])
		mustAppend(t, hn, int64(off/4096), []byte("n"))
	}
	r := newStore(t, shared, Options{})
	hr := open(t, r, key)
	const from = 250*1024 + 100
	buf := make([]byte, 1024)
	before := r.fetches.Load()
	b, _, _, err := hr.Read(context.Background(), buf, from)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want[from:from+len(b)]) || len(b) == 0 {
		t.Fatalf("Read(%d) = %d bytes, not the stored ones", from, len(b))
	}
	if n := r.fetches.Load() - before; n > 25 {
		t.Errorf("resuming at %d fetched %d messages of a %d-message stream; want O(log n)", from, n, 400)
	}
	// Reading on from there costs one fetch per chunk, not a search each.
	before = r.fetches.Load()
	off := int64(from + len(b))
	for off < 300*1024 {
		b, _, _, err := hr.Read(context.Background(), buf, off)
		if err != nil || len(b) == 0 {
			t.Fatalf("Read(%d) = %d bytes, %v", off, len(b), err)
		}
		if !bytes.Equal(b, want[off:off+int64(len(b))]) {
			t.Fatalf("Read(%d) differs", off)
		}
		off += int64(len(b))
	}
	if n := r.fetches.Load() - before; n > 60 {
		t.Errorf("reading 50 chunks in order fetched %d messages, want about 50", n)
	}
}

// TestBucketDirectGetsOff proves that a stream created through one instance is known
// at once to every other ("Open returns a handle on an existing stream, or
// ErrNotFound"), with no second look: a direct get may be answered by a replica that
// has not yet applied a create acknowledged a moment ago, so the meta bucket has direct
// gets off and its reads go to its leader. That holds for the bucket a Store makes, and
// for one made as the jetstream package makes buckets (and as earlier versions of
// Sluice did), with direct gets on, which Open turns off.
func TestBucketDirectGetsOff(t *testing.T) {
	s := newStore(t, shared, Options{})
	direct := func(bucket string) bool {
		t.Helper()
		st, err := s.js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.AllowDirect
	}
	if direct(s.opts.Bucket) {
		t.Error("a Store's own bucket has direct gets on")
	}
	old := fmt.Sprintf("direct_%d", rand.IntN(1<<30))
	if _, err := s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: old, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.js.DeleteKeyValue(ctx, old) })
	if !direct(old) {
		t.Fatal("the jetstream package made a bucket without direct gets: the test proves nothing")
	}
	a, b := newStore(t, shared, Options{Bucket: old}), newStore(t, shared, Options{Bucket: old})
	if direct(old) {
		t.Error("an existing bucket still has direct gets on after Open")
	}
	for range 20 {
		key := newKey(t)
		create(t, a, key)
		mustAppend(t, open(t, a, key), 0, []byte("through the old bucket"))
		if got := open(t, b, key).Info().Length; got != 22 {
			t.Fatalf("another instance sees length %d right after the write, want 22", got)
		}
	}
}

// TestMaxOpenStreams proves that MaxOpenStreams bounds the open streams of the whole
// cluster, as the file store's does on one machine ("ErrTooManyStreams means the store
// holds as many open streams as it allows"): across two instances, a create beyond the
// limit is refused while existing streams take their publishes, and a close or a purge
// through either instance frees a place.
func TestMaxOpenStreams(t *testing.T) {
	// Names of its own: the limit counts every open stream in the JetStream stream.
	opts := ownNames(t, "limit")
	opts.MaxOpenStreams = 2
	a, b := newStore(t, shared, opts), newStore(t, shared, opts)
	create(t, a, "one")
	create(t, b, "two")
	if na, nb := a.OpenStreams(), b.OpenStreams(); na != 2 || nb != 2 {
		t.Fatalf("OpenStreams = %d and %d on the two instances, want 2 (the cluster's)", na, nb)
	}
	for _, s := range []*Store{a, b} {
		if _, created, err := s.Create(ctx, "three", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) {
			t.Fatalf("third Create = %v, %v; want ErrTooManyStreams", created, err)
		}
		if _, created, err := s.Create(ctx, "one", sluice.CreateOptions{}); created || err != nil {
			t.Fatalf("Create of an existing stream at the limit = %v, %v; want false, nil", created, err)
		}
	}
	mustAppend(t, open(t, b, "one"), 0, []byte("an open stream at the limit takes bytes"))
	if _, err := open(t, b, "one").Close(ctx); err != nil {
		t.Fatal(err)
	}
	create(t, a, "three")
	if _, _, err := b.Create(ctx, "four", sluice.CreateOptions{}); !errors.Is(err, sluice.ErrTooManyStreams) {
		t.Fatalf("Create at the limit again = %v, want ErrTooManyStreams", err)
	}
	if err := a.Purge(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	if n := b.OpenStreams(); n != 1 {
		t.Fatalf("OpenStreams after a close and a purge = %d, want 1", n)
	}
	create(t, b, "four")
}

// TestReadWhileWritingElsewhere proves that readers on one instance, opening a stream
// again and again while writers on another append to it, each read a prefix of what
// is finally stored, from offset 0, never an error.
func TestReadWhileWritingElsewhere(t *testing.T) {
	w, r := newStore(t, shared, Options{}), newStore(t, shared, Options{})
	key := newKey(t)
	create(t, w, key)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 3 {
		wg.Go(func() {
			h := open(t, w, key)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := h.Write(ctx, sluice.Write{Data: []byte(fmt.Sprintf("<%d.%d>", i, j))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 7 {
		wg.Go(func() {
			for range 30 {
				h, err := r.Open(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				buf := make([]byte, 64<<10)
				for off := int64(0); off < h.Info().Length; {
					b, _, _, err := h.Read(ctx, buf, off)
					if err != nil {
						t.Errorf("read at %d of %d: %v", off, h.Info().Length, err)
						break
					}
					off += int64(len(b))
				}
				h.Release()
			}
		})
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
}

// TestReady proves readiness follows NATS: Ready passes while the cluster serves, and
// fails once every node is gone.
func TestReady(t *testing.T) {
	c, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	s := newStore(t, c, Options{RequestTimeout: 200 * time.Millisecond})
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready with the cluster up: %v", err)
	}
	c.Shutdown()
	deadline := time.Now().Add(failAfter)
	for s.Ready(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Ready still passes with every NATS node gone")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdleClose proves idle streams are closed in cluster mode too: a stream nobody
// writes to is closed by the sweep, and one written to all along stays open.
func TestIdleClose(t *testing.T) {
	s := newStore(t, shared, Options{IdleClose: 400 * time.Millisecond, SweepInterval: 100 * time.Millisecond})
	quiet, busy := newKey(t), newKey(t)
	create(t, s, quiet)
	create(t, s, busy)
	hb := open(t, s, busy)
	deadline := time.Now().Add(failAfter)
	for off := int64(0); ; off++ {
		mustAppend(t, hb, off, []byte("x"))
		if open(t, s, quiet).Info().Closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream nobody wrote to is still open")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if open(t, s, busy).Info().Closed {
		t.Fatal("the stream written to all along was closed")
	}
}
