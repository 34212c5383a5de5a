package tail

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice"
)

// TestPublishWakesOnChange proves the waiting rule: a snapshot's Changed is closed when
// the stream changes after it, and only then ("a channel that is closed when the stream
// changes", sluice.Stream.Read).
func TestPublishWakesOnChange(t *testing.T) {
	var cur atomic.Pointer[Snapshot]
	first := New(sluice.Info{Version: "v"})
	cur.Store(&first)

	next := first
	next.Tail.Reset(0) // the tail alone: nothing new to read
	Publish(&cur, &next)
	if isClosed(first.Changed) || cur.Load().Changed != first.Changed {
		t.Fatal("a change of the tail alone woke followers")
	}

	grown := *cur.Load()
	grown.Appended(0, []byte("abc"), true, 1<<20)
	Publish(&cur, &grown)
	if !isClosed(first.Changed) || isClosed(cur.Load().Changed) {
		t.Fatal("an append did not wake followers, or the new snapshot's channel is closed")
	}
}

// TestTailViews proves that reads of the tail are views of blocks that never change,
// up to the end of a block, and that bytes not seen in order restart the tail.
func TestTailViews(t *testing.T) {
	sn := New(sluice.Info{})
	want := bytes.Repeat([]byte("0123456789"), BlockSize/5) // two blocks
	sn.Appended(0, want[:100], true, 1<<20)
	first, ok := sn.Read(0)
	if !ok || !bytes.Equal(first, want[:100]) || cap(first) != 100 {
		t.Fatalf("Read(0) = %d bytes (cap %d), %v; want a view of the 100 bytes", len(first), cap(first), ok)
	}
	sn.Appended(100, want[100:], true, 1<<20)
	if b, ok := sn.Read(50); !ok || !bytes.Equal(b, want[50:BlockSize]) {
		t.Fatalf("Read(50) = %d bytes, %v; want a view up to the end of the block", len(b), ok)
	}
	if !bytes.Equal(first, want[:100]) {
		t.Fatal("an earlier view changed")
	}
	if b, ok := sn.Read(int64(len(want))); !ok || len(b) != 0 {
		t.Fatalf("Read at the length = %d bytes, %v; want none, ok", len(b), ok)
	}

	sn.Appended(int64(len(want))+10, []byte("x"), true, 1<<20) // written elsewhere
	if sn.Info.Length != int64(len(want))+11 || sn.Tail.Blocks() != 0 || sn.Tail.Start() != sn.Info.Length {
		t.Fatalf("after a jump: length %d, tail of %d blocks from %d; want an empty tail at the new length",
			sn.Info.Length, sn.Tail.Blocks(), sn.Tail.Start())
	}
	if _, ok := sn.Read(0); ok {
		t.Fatal("Read(0) after a jump is served from the tail; want the store's storage")
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
