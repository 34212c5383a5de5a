package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice"
)

// writers: a store keeps the writers' state with the bytes (sluice.Writers.Admit):
// a producer's retry is a duplicate, not stored again, an older epoch is fenced off, a
// gap in its sequence refused, a new epoch starts at 0, producers are independent; a
// Seq must grow; the producer write that closed the stream is a duplicate when retried,
// any other write to it ErrClosed. A second handle, and the state after the stream's
// handles are all gone, agree.
func writers(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	Create(t, s, key)
	h := MustOpen(t, s, key)
	p := func(id string, epoch, seq uint64) *sluice.Producer {
		return &sluice.Producer{ID: id, Epoch: epoch, Seq: seq}
	}
	steps := []struct {
		name    string
		w       sluice.Write
		dup     bool
		wantErr error
		want    string // the stream's bytes after
	}{
		{"a first", sluice.Write{Data: []byte("a0 "), Producer: p("a", 0, 0)}, false, nil, "a0 "},
		{"a retry", sluice.Write{Data: []byte("a0 "), Producer: p("a", 0, 0)}, true, nil, "a0 "},
		{"b first", sluice.Write{Data: []byte("b0 "), Producer: p("b", 0, 0)}, false, nil, "a0 b0 "},
		{"a next", sluice.Write{Data: []byte("a1 "), Producer: p("a", 0, 1)}, false, nil, "a0 b0 a1 "},
		{"a gap", sluice.Write{Data: []byte("a3 "), Producer: p("a", 0, 3)}, false, sluice.ErrProducerSeq, "a0 b0 a1 "},
		{"a new epoch not at 0", sluice.Write{Data: []byte("x "), Producer: p("a", 1, 4)}, false, sluice.ErrProducerEpoch, "a0 b0 a1 "},
		{"a new epoch", sluice.Write{Data: []byte("A0 "), Producer: p("a", 1, 0)}, false, nil, "a0 b0 a1 A0 "},
		{"a stale epoch", sluice.Write{Data: []byte("zombie "), Producer: p("a", 0, 2)}, false, sluice.ErrStaleEpoch, "a0 b0 a1 A0 "},
		{"unknown producer not at 0", sluice.Write{Data: []byte("c5 "), Producer: p("c", 0, 5)}, false, sluice.ErrProducerSeq, "a0 b0 a1 A0 "},
		{"seq", sluice.Write{Data: []byte("s1 "), Seq: "001"}, false, nil, "a0 b0 a1 A0 s1 "},
		{"seq again", sluice.Write{Data: []byte("s1 "), Seq: "001"}, false, sluice.ErrSeqOrder, "a0 b0 a1 A0 s1 "},
		{"seq lexicographic", sluice.Write{Data: []byte("s9 "), Seq: "0009"}, false, sluice.ErrSeqOrder, "a0 b0 a1 A0 s1 "},
		{"seq greater", sluice.Write{Data: []byte("s2 "), Seq: "002"}, false, nil, "a0 b0 a1 A0 s1 s2 "},
		{"b closes", sluice.Write{Data: []byte("end"), Close: true, Producer: p("b", 0, 1)}, false, nil, "a0 b0 a1 A0 s1 s2 end"},
		{"b retries the close", sluice.Write{Data: []byte("other"), Close: true, Producer: p("b", 0, 1)}, true, nil, "a0 b0 a1 A0 s1 s2 end"},
		{"a after the close", sluice.Write{Data: []byte("A1"), Producer: p("a", 1, 1)}, false, sluice.ErrClosed, "a0 b0 a1 A0 s1 s2 end"},
		{"plain close again", sluice.Write{Close: true}, false, nil, "a0 b0 a1 A0 s1 s2 end"},
	}
	for _, st := range steps {
		wr, err := h.Write(ctx, st.w)
		if !errors.Is(err, st.wantErr) || wr.Duplicate != st.dup {
			t.Fatalf("%s: Write = %+v, %v; want duplicate %v, %v", st.name, wr, err, st.dup, st.wantErr)
		}
		var pe *sluice.ProducerError
		if errors.Is(err, sluice.ErrProducerSeq) && (!errors.As(err, &pe) || pe.Received != st.w.Producer.Seq) {
			t.Fatalf("%s: error %v does not say what the stream expected and got", st.name, err)
		}
		if got, _ := readAll(t, h); string(got) != st.want {
			t.Fatalf("%s: stream %q, want %q", st.name, got, st.want)
		}
	}
	if wr, err := MustOpen(t, s, key).Write(ctx, sluice.Write{Data: []byte("a1 "), Producer: p("a", 0, 1)}); !errors.Is(err, sluice.ErrClosed) {
		t.Fatalf("another handle: Write = %+v, %v; want ErrClosed", wr, err)
	}
	if wr, err := MustOpen(t, s, key).Write(ctx, sluice.Write{Close: true, Producer: p("b", 0, 1)}); err != nil || !wr.Duplicate || wr.Producer.Seq != 1 {
		t.Fatalf("another handle: retry of the close = %+v, %v; want a duplicate of b's seq 1", wr, err)
	}
}

// writersOpen: the state outlives the handles: a stream whose handles were all
// released remembers its producers.
func writersOpen(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	key := newKey(t)
	Create(t, s, key)
	h, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	prod := &sluice.Producer{ID: "p", Epoch: 3, Seq: 0}
	if _, err := h.Write(ctx, sluice.Write{Data: []byte("once"), Producer: prod, Seq: "k"}); err != nil {
		t.Fatal(err)
	}
	h.Release()
	h2 := MustOpen(t, s, key)
	wr, err := h2.Write(ctx, sluice.Write{Data: []byte("once"), Producer: prod})
	if err != nil || !wr.Duplicate || wr.Producer.Epoch != 3 || wr.Length != 4 {
		t.Fatalf("retry after every handle went = %+v, %v; want a duplicate, epoch 3, length 4", wr, err)
	}
	if _, err := h2.Write(ctx, sluice.Write{Data: []byte("x"), Seq: "j"}); !errors.Is(err, sluice.ErrSeqOrder) {
		t.Fatalf("a smaller Seq after every handle went = %v, want ErrSeqOrder", err)
	}
}
