package fanout

import (
	"fmt"
	"testing"
	"time"
)

// isClosed reports whether c is closed, without waiting.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitClosed fails the test if c is not closed within a generous bound.
func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: never released", what)
	}
}

// queueLen is the number of streams with waiting followers.
func (t *turns) queueLen() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queues)
}

// waitGone waits for the queue goroutines to end, as they must once nobody waits.
func waitGone(t *testing.T, tu *turns) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tu.queueLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d stream queues left behind", tu.queueLen())
		}
		time.Sleep(time.Millisecond)
	}
}

// Followers are let go only when their change comes, in the order they queued, in
// batches of turnBatch, and a batch queued on a later change waits for that change.
func TestTurnsReleaseInOrderOnChange(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	tu := &turns{stop: stop}

	first, second := make(chan struct{}), make(chan struct{})
	var early []*turn
	for range turnBatch + 1 {
		early = append(early, tu.wait("k", first))
	}
	if early[0] != early[turnBatch-1] || early[0] == early[turnBatch] {
		t.Fatalf("followers are not batched by %d", turnBatch)
	}
	late := tu.wait("k", second)
	other := tu.wait("other", first) // another stream has its own queue

	for _, tn := range append(early, late, other) {
		if isClosed(tn.ready) {
			t.Fatal("a follower was let go before its stream changed")
		}
	}
	close(first)
	for i, tn := range early {
		waitClosed(t, tn.ready, fmt.Sprint("follower ", i))
	}
	waitClosed(t, other.ready, "the other stream's follower")
	if isClosed(late.ready) {
		t.Fatal("a follower waiting for a later change was let go on an earlier one")
	}
	close(second)
	waitClosed(t, late.ready, "the late follower")
	waitGone(t, tu)
}

// A follower whose change came before it queued goes at once, without a queue.
func TestTurnsChangedAlready(t *testing.T) {
	tu := &turns{stop: make(chan struct{})}
	changed := make(chan struct{})
	close(changed)
	tn := tu.wait("k", changed)
	if !isClosed(tn.ready) {
		t.Fatal("a follower of a stream that has changed already must not wait")
	}
	if tu.queueLen() != 0 {
		t.Fatal("a queue was made for nobody")
	}
	tu.leave("k", tn) // harmless
}

// When every follower leaves (gone, idle, draining), the stream's goroutine ends, even
// though the stream never changes again; and a follower leaving a batch does not hold
// back the others.
func TestTurnsLeave(t *testing.T) {
	tu := &turns{stop: make(chan struct{})}
	changed := make(chan struct{})
	a, b := tu.wait("k", changed), tu.wait("k", changed)
	tu.leave("k", a)
	if tu.queueLen() != 1 {
		t.Fatal("the queue ended while a follower still waits")
	}
	close(changed)
	waitClosed(t, b.ready, "the follower that stayed")
	tu.leave("k", b) // after its turn: harmless

	never := make(chan struct{})
	c, d := tu.wait("k", never), tu.wait("k", never)
	tu.leave("k", c)
	tu.leave("k", d)
	waitGone(t, tu)
}

// Stopping the server lets every waiter go, so that none outlives it.
func TestTurnsStop(t *testing.T) {
	stop := make(chan struct{})
	tu := &turns{stop: stop}
	never := make(chan struct{})
	var all []*turn
	for range 3 * turnBatch {
		all = append(all, tu.wait("k", never))
	}
	close(stop)
	for _, tn := range all {
		waitClosed(t, tn.ready, "a waiter at shutdown")
	}
	waitGone(t, tu)
}
