package fanout

import (
	"runtime"
	"sync"
)

// Followers that have caught up wait for their stream to grow in turns, not all at once.
//
// The store tells of a change by closing a channel. If 10,000 followers waited on it
// directly, closing it would make them all runnable at once, and Go's scheduler would run
// anything that becomes ready afterwards behind all of them, first the publisher's next
// read: at 10,000 SSE followers on one core its bytes waited about 90 ms in their socket
// before the server read them (go tool trace), most of the delivery latency. So a
// follower waits in its stream's queue instead, and one goroutine per stream with waiters
// lets them go in batches of turnBatch, in the order they started to wait, yielding the
// processor between batches. The run queue stays short, the publisher is read within a
// few milliseconds, and followers take turns fairly: one that has just been served waits
// behind those that have not.
const turnBatch = 64

// turns holds the queues of waiting followers, by stream key.
type turns struct {
	stop   <-chan struct{} // releases every waiter when the server stops
	mu     sync.Mutex
	queues map[string]*turnQueue
}

// turnQueue is a stream's waiting followers, in batches in the order they queued. Every
// batch's changed channel was open when the batch was queued, so a batch's change cannot
// come before that of the batches ahead of it.
type turnQueue struct {
	batches []*turn
	kick    chan struct{} // wakes the queue's goroutine when waiters leave
}

// turn is a batch of followers that saw the same state and go together.
type turn struct {
	changed <-chan struct{} // the store's: closed on the change the batch waits for
	ready   chan struct{}   // closed when the batch's turn has come
	n       int             // followers waiting in the batch
}

// closedChan is the ready channel of a follower that need not wait.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// wait queues a follower of key until changed is closed and the follower's turn has come,
// when the returned turn's ready channel is closed. A follower that stops waiting before
// must call leave.
func (t *turns) wait(key string, changed <-chan struct{}) *turn {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-changed:
		return &turn{ready: closedChan} // it changed already: no need to queue
	default:
	}
	if t.queues == nil {
		t.queues = make(map[string]*turnQueue)
	}
	q := t.queues[key]
	if q == nil {
		q = &turnQueue{kick: make(chan struct{}, 1)}
		t.queues[key] = q
		go t.run(key, q)
	}
	var tn *turn
	if n := len(q.batches); n > 0 && q.batches[n-1].changed == changed && q.batches[n-1].n < turnBatch {
		tn = q.batches[n-1]
	} else {
		tn = &turn{changed: changed, ready: make(chan struct{})}
		q.batches = append(q.batches, tn)
	}
	tn.n++
	return tn
}

// leave takes a follower out of the turn it waits in.
func (t *turns) leave(key string, tn *turn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tn.n == 0 {
		return // its turn came already, or it never queued
	}
	tn.n--
	if q := t.queues[key]; q != nil && tn.n == 0 {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// run lets the batches of q go, one at a time, as their changes come, and ends when no
// follower waits on the stream any more.
func (t *turns) run(key string, q *turnQueue) {
	for {
		t.mu.Lock()
		for len(q.batches) > 0 && q.batches[0].n == 0 {
			q.batches = q.batches[1:] // everyone in it left
		}
		if len(q.batches) == 0 {
			delete(t.queues, key)
			t.mu.Unlock()
			return
		}
		head := q.batches[0]
		t.mu.Unlock()
		select {
		case <-head.changed:
		case <-t.stop:
		case <-q.kick:
			continue
		}
		t.mu.Lock()
		q.batches = q.batches[1:]
		head.n = 0
		t.mu.Unlock()
		close(head.ready)
		runtime.Gosched() // let this batch and whatever else is ready run before the next
	}
}
