package fanout

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// A follower on a hijacked plain TCP connection that has caught up waits without a
// goroutine: it is parked in its stream's hub. One goroutine per stream with parked
// followers (the hub's) wakes when the stream grows, reads the new bytes once for all
// the followers at the same offset, frames them for each and writes them to each
// socket without waiting (Wire.Park), in turns so that every follower gets its share of
// each pass and the publisher is read between them. A follower whose socket does not
// take the bytes at once, or whose stream closes, purges, drains or ends, is unparked:
// it gets a goroutine again, which finishes its write under the write deadline and
// goes on as any follower, until it parks again. So the cost of a delivery to a
// follower that keeps up is a write(2) and its framing: no wake-up of its own, no
// channel, no timer, no read of its own; and an idle follower costs its socket and a
// few hundred bytes, no goroutine.

// hubBatch is how many followers a hub writes to before it yields the processor, so
// that the publisher's next read (readied by the network poller) is not held back by a
// pass over thousands of followers.
const hubBatch = 64

// Follower is a follower that the Fanout serves from Serve to Finish.
type Follower struct {
	Member    *Member
	Stream    sluice.Stream
	Transport Transport
	// Wire is its connection; a Parkable one lets it wait parked.
	Wire *Wire
	// Off is where it reads next; End, if not -1, where it stops; Follow false stops it
	// at the stored length.
	Off, End int64
	Follow   bool
	// Finish ends the response as the outcome says, and all that the follower's end
	// needs (its log line, its handle's release). It is called once, on a goroutine of
	// the Fanout's.
	Finish func(o Outcome, reached int64)

	changed <-chan struct{} // of its last read, while parked
	probed  time.Time       // its last keepalive, while parked
	gone    error           // a parked write's or keepalive's failure, for its goroutine
}

// An Answerer is a Transport whose client talks back (a WebSocket's pings and close):
// its reader, on a goroutine of its own, notes what is owed and wakes the stream's
// hub (Wake); the follower's owner, parked or not, writes it with Answer between its
// writes, so that only one goroutine ever writes to the connection.
type Answerer interface {
	// Answer writes what is owed, if anything (cheap when nothing is); an error ends
	// the follower (its client closed or is gone).
	Answer() error
	// Owed receives when something becomes owed: a follower that waits on a goroutine
	// of its own (Follow) answers then.
	Owed() <-chan struct{}
}

// answer writes what f's client is owed, if its transport is an Answerer.
func answer(f *Follower) error {
	if a, ok := f.Transport.(Answerer); ok {
		return a.Answer()
	}
	return nil
}

// Wake makes the hub of key look at its parked followers at once: a follower's client
// is owed an answer (Answerer), or End ended them and they must be unparked. A follower
// that is not parked answers before it parks.
func (fan *Fanout) Wake(key string) {
	fan.hubsMu.Lock()
	h := fan.hubs[key]
	fan.hubsMu.Unlock()
	if h != nil {
		h.wake()
	}
}

// Serve follows the stream for f on a goroutine of the Fanout's own: Shutdown waits
// for f to finish, and closes its connection once the grace is over.
func (fan *Fanout) Serve(f *Follower) {
	fan.mu.Lock()
	if fan.killed {
		fan.mu.Unlock()
		f.Finish(OutcomeDrained, f.Off)
		return
	}
	fan.served[f] = struct{}{}
	fan.owned.Add(1)
	fan.mu.Unlock()
	go fan.run(f)
}

// run follows for f until it is done, and finishes it, or until it parks.
func (fan *Fanout) run(f *Follower) {
	if err := fan.unparked(f); err != nil {
		fan.finish(f, fan.failed(err))
		return
	}
	parkable := f.Wire != nil && f.Wire.Parkable() && f.Follow && f.End < 0
	if !parkable {
		o, off := fan.Follow(context.Background(), f.Member, f.Stream, f.Transport, f.Off, f.End, f.Follow)
		f.Off = off
		fan.finish(f, o)
		return
	}
	o, next, changed, done := fan.step(context.Background(), f.Member, f.Stream, f.Transport, f.Off, f.End, f.Follow)
	f.Off = next
	if done {
		fan.finish(f, o)
		return
	}
	if err := answer(f); err != nil {
		fan.finish(f, fan.failed(err))
		return
	}
	f.changed, f.probed = changed, time.Now()
	f.Wire.Park(true)
	fan.park(f)
}

// unparked makes f's Wire wait again and sends what a parked write left pending, or
// tells why it cannot go on.
func (fan *Fanout) unparked(f *Follower) error {
	if f.Wire == nil {
		return nil
	}
	f.Wire.Park(false)
	if f.gone != nil {
		return f.gone
	}
	return f.Wire.Flush()
}

// finish ends f.
func (fan *Fanout) finish(f *Follower, o Outcome) {
	defer fan.owned.Done()
	f.Finish(o, f.Off)
	fan.mu.Lock()
	delete(fan.served, f)
	fan.mu.Unlock()
}

// hub is a stream's parked followers. Only its goroutine touches a parked follower,
// and only its goroutine unparks one (handing it to a goroutine of its own): End and
// Drain wake it, and it unparks those they stopped.
type hub struct {
	fan  *Fanout
	key  string
	kick chan struct{} // a follower parked, or End ended the stream's followers

	mu      sync.Mutex
	parked  []*Follower
	changed <-chan struct{} // the newest the hub knows of the stream
	every   time.Duration   // the shortest Idle() of its followers: how often it ticks
	rotate  int             // where the next pass starts, so that each gets its turn first
}

// park hands f, caught up, to its stream's hub, starting the hub if need be.
func (fan *Fanout) park(f *Follower) {
	fan.hubsMu.Lock()
	h := fan.hubs[f.Member.key]
	if h == nil {
		h = &hub{fan: fan, key: f.Member.key, kick: make(chan struct{}, 1)}
		fan.hubs[f.Member.key] = h
		fan.hubRuns.Add(1)
		go h.run()
	}
	h.mu.Lock()
	h.parked = append(h.parked, f)
	if h.changed == nil {
		h.changed = f.changed
	}
	if d := f.Transport.Idle(); d > 0 && (h.every == 0 || d < h.every) {
		h.every = d
	}
	h.mu.Unlock()
	fan.hubsMu.Unlock()
	h.wake()
}

// wake makes the hub look at its followers.
func (h *hub) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run serves the hub's parked followers until none is left.
func (h *hub) run() {
	defer h.fan.hubRuns.Done()
	var tick *time.Ticker
	var every time.Duration
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	deliver := true // the first follower's change may have come already
	for {
		changed, d, ok := h.state()
		if !ok {
			return
		}
		if d != every {
			if tick != nil {
				tick.Stop()
			}
			tick, every = time.NewTicker(d), d
		}
		if deliver {
			deliver = h.deliver()
			continue
		}
		var ticks <-chan time.Time
		if tick != nil {
			ticks = tick.C
		}
		select {
		case <-changed:
			deliver = true
		case <-h.kick:
			deliver = true
		case <-h.fan.drain.Done():
			deliver = true
		case now := <-ticks:
			h.keepalive(now)
		}
	}
}

// state is what the hub waits for, or not ok when it has no follower left, and then it
// is gone: a follower that parks next starts a new hub.
func (h *hub) state() (changed <-chan struct{}, every time.Duration, ok bool) {
	h.fan.hubsMu.Lock()
	defer h.fan.hubsMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.parked) == 0 {
		delete(h.fan.hubs, h.key)
		return nil, 0, false
	}
	return h.changed, h.every, true
}

// deliver sends the parked followers what the stream has past their offsets, in one
// pass, and reports whether it has more for them at once.
func (h *hub) deliver() (more bool) {
	h.mu.Lock()
	parked := append([]*Follower(nil), h.parked...)
	h.rotate++
	start := h.rotate % len(parked)
	h.mu.Unlock()
	reads := map[int64]read{} // one read for all the followers at an offset
	defer func() {
		for _, r := range reads {
			bufPool.Put(r.buf)
		}
	}()
	var unpark []*Follower
	// The hub waits next on the change after the oldest state a follower was sent (the
	// first read at the lowest length): a later read's channel would leave the followers
	// of an earlier read, which missed the bytes that came between, waiting for the
	// stream's next change. That channel is closed already if the stream grew since.
	var oldest read
	for i := range parked {
		f := parked[(start+i)%len(parked)]
		r, ok := reads[f.Off]
		if !ok {
			r.buf = bufPool.Get().(*[]byte)
			r.b, r.info, r.changed, r.err = f.Stream.Read(context.Background(), *r.buf, f.Off)
			reads[f.Off] = r
			if r.changed != nil && (oldest.changed == nil || r.info.Length < oldest.info.Length) {
				oldest = r
			}
		}
		from := f.Off
		if !h.write(f, r) {
			unpark = append(unpark, f)
			continue
		}
		// Not f.Off: bytes the transport held back (an incomplete character) wait for
		// the rest of them.
		more = more || from+int64(len(r.b)) < r.info.Length
		if (i+1)%hubBatch == 0 {
			runtime.Gosched()
			dropStale(reads)
		}
	}
	h.mu.Lock()
	h.parked = remove(h.parked, unpark)
	if oldest.changed != nil {
		h.changed = oldest.changed
	}
	h.mu.Unlock()
	for _, f := range unpark {
		go h.fan.run(f)
	}
	return more
}

// dropStale forgets the reads of a pass that the stream has grown past, so that the
// followers still to come in the pass read again and get the bytes that came since: a
// pass over thousands of followers takes as long as a line's interval, and without it
// those bytes would wait for the next pass. A read's buffer goes back to the pool at
// once; the followers written from it have their bytes in their Wires.
func dropStale(reads map[int64]read) {
	for off, r := range reads {
		select {
		case <-r.changed:
			bufPool.Put(r.buf)
			delete(reads, off)
		default:
		}
	}
}

// read is what a hub read at an offset, into buf.
type read struct {
	buf     *[]byte
	b       []byte
	info    sluice.Info
	changed <-chan struct{}
	err     error
}

// write sends f what its client is owed and the bytes of r, without waiting, and
// reports whether f stays parked: not if anything but bytes of an open stream is to be
// told, or the socket did not take them all.
func (h *hub) write(f *Follower, r read) bool {
	if r.err != nil || r.info.Closed || stopped(context.Background(), h.fan.drain, f.Member.ended) != nil {
		return false
	}
	if err := answer(f); err != nil {
		f.gone = err
		return false
	}
	if len(r.b) == 0 {
		return !f.Wire.Pending()
	}
	n, err := f.Transport.Write(r.b, f.Off, r.info, false)
	if err == nil {
		err = f.Transport.Flush()
	}
	f.Off += int64(n)
	if err != nil {
		f.gone = err
		return false
	}
	return !f.Wire.Pending()
}

// keepalive calls the Keepalive of the parked followers every Idle(), as Follow does,
// and unparks those whose keepalive failed or could not go at once.
func (h *hub) keepalive(now time.Time) {
	h.mu.Lock()
	parked := append([]*Follower(nil), h.parked...)
	h.mu.Unlock()
	var unpark []*Follower
	for _, f := range parked {
		d := f.Transport.Idle()
		if d <= 0 || now.Sub(f.probed) < d {
			continue
		}
		f.probed = now
		if err := f.Transport.Keepalive(); err != nil || f.Wire.Pending() {
			f.gone = err
			unpark = append(unpark, f)
		}
	}
	h.mu.Lock()
	h.parked = remove(h.parked, unpark)
	h.mu.Unlock()
	for _, f := range unpark {
		go h.fan.run(f)
	}
}

// remove returns list without the followers of out.
func remove(list, out []*Follower) []*Follower {
	if len(out) == 0 {
		return list
	}
	drop := make(map[*Follower]bool, len(out))
	for _, f := range out {
		drop[f] = true
	}
	kept := list[:0]
	for _, f := range list {
		if !drop[f] {
			kept = append(kept, f)
		}
	}
	clear(list[len(kept):])
	return kept
}
