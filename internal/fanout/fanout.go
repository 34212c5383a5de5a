// Package fanout delivers a stream's bytes to its followers, whatever their protocol:
// the follower loop (read what is stored, write it, wait for more), the turns in which
// caught-up followers wait, and the writer of hijacked connections. Each protocol (busl's
// raw and SSE, WebSocket, Durable Streams) only frames bytes, in a Transport.
//
// A Fanout owns its followers: it counts them against the limits, ends those of one
// stream on demand (End: a purge, a revoked capability), ends them all when the server
// drains, and owns the goroutines of followers on hijacked connections, whose
// connections it closes when a shutdown's grace period is over.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTooManyFollowers refuses a follower beyond the configured limits.
var ErrTooManyFollowers = errors.New("too many followers")

// Config tunes a Fanout.
type Config struct {
	// MaxFollowers and MaxStreamFollowers bound followers in all and per stream; 0 means
	// no limit.
	MaxFollowers, MaxStreamFollowers int
}

// Fanout is the followers of a server's streams.
type Fanout struct {
	cfg   Config
	turns turns

	drain     context.Context // done when the server drains: followers end
	stopDrain context.CancelFunc

	mu        sync.Mutex
	followers int
	keys      map[string]*keyState
	served    map[*Follower]struct{} // followers of Serve, running or parked
	owned     sync.WaitGroup         // the holders of Hold
	killed    bool

	hubsMu  sync.Mutex
	hubs    map[string]*hub // the parked followers, by stream key (hub.go)
	hubRuns sync.WaitGroup  // the hubs' goroutines
}

// keyState is what the Fanout knows of one stream's followers.
type keyState struct {
	n     int
	ended chan struct{} // closed by End; replaced for later followers
}

// New returns a Fanout with no followers.
func New(cfg Config) *Fanout {
	f := &Fanout{cfg: cfg, keys: make(map[string]*keyState),
		served: make(map[*Follower]struct{}), hubs: make(map[string]*hub)}
	f.drain, f.stopDrain = context.WithCancel(context.Background())
	f.turns.stop = f.drain.Done()
	return f
}

// Member is one follower's place among a stream's followers, from Join to Leave.
type Member struct {
	f     *Fanout
	key   string
	ended <-chan struct{}
	once  sync.Once
}

// Join counts a follower of the stream of key, or refuses it beyond the limits with
// ErrTooManyFollowers. The follower calls Leave when it ends.
func (f *Fanout) Join(key string) (*Member, error) {
	// The checks and the counting happen under f.mu, so that followers arriving at
	// once cannot all pass a check before any is counted.
	f.mu.Lock()
	defer f.mu.Unlock()
	ks := f.keys[key]
	if max := f.cfg.MaxFollowers; max > 0 && f.followers >= max {
		return nil, fmt.Errorf("%w: the server has %d (limit %d)", ErrTooManyFollowers, f.followers, max)
	}
	if max := f.cfg.MaxStreamFollowers; max > 0 && ks != nil && ks.n >= max {
		return nil, fmt.Errorf("%w: the stream has %d (limit %d)", ErrTooManyFollowers, ks.n, max)
	}
	if ks == nil {
		ks = &keyState{ended: make(chan struct{})}
		f.keys[key] = ks
	}
	ks.n++
	f.followers++
	return &Member{f: f, key: key, ended: ks.ended}, nil
}

// Leave uncounts the follower; calling it again does nothing.
func (m *Member) Leave() {
	m.once.Do(func() {
		f := m.f
		f.mu.Lock()
		defer f.mu.Unlock()
		f.followers--
		if ks := f.keys[m.key]; ks != nil {
			if ks.n--; ks.n == 0 {
				delete(f.keys, m.key)
			}
		}
	})
}

// Ended is closed when End ends the stream's followers.
func (m *Member) Ended() <-chan struct{} { return m.ended }

// Followers reports how many followers are counted now.
func (f *Fanout) Followers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.followers
}

// End ends the followers that the stream of key has now (their Follow returns
// OutcomeEnded); later followers are not affected.
func (f *Fanout) End(key string) {
	f.mu.Lock()
	if ks := f.keys[key]; ks != nil {
		close(ks.ended)
		ks.ended = make(chan struct{})
	}
	f.mu.Unlock()
	f.Wake(key)
}

// Drain ends every follower (Follow returns OutcomeDrained), as a shutdown begins.
func (f *Fanout) Drain() { f.stopDrain() }

// Draining is done once Drain was called.
func (f *Fanout) Draining() context.Context { return f.drain }

// Hold counts a follower until it calls release, so that Shutdown waits for it: a
// hijacked follower from before its hijack (while http.Server.Shutdown still waits for
// its request) to its end, and an HTTP/2 follower, which the http.Server's Close ends
// after the grace.
func (f *Fanout) Hold() (release func()) {
	f.owned.Add(1)
	return f.owned.Done
}

// Shutdown waits for the followers of Serve, the hubs and the holders of Hold to end,
// until ctx is done; then it closes the connections of Serve's followers, which ends
// every write and wait of theirs at once, and waits for them all. Call Drain first, so
// that they end by themselves. It reports ctx's error if the grace period ran out.
func (f *Fanout) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.owned.Wait(); f.hubRuns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	f.killed = true
	for fl := range f.served {
		if c := fl.Wire.Conn(); c != nil {
			c.Close()
		}
	}
	f.mu.Unlock()
	<-done
	return ctx.Err()
}

// Wait waits, in turns with the stream's other followers (see turns), until changed is
// closed, or the member is ended, the server drains or ctx is done: a long-poll's wait
// for the stream to grow. It reports false unless the change came.
func (f *Fanout) Wait(ctx context.Context, m *Member, changed <-chan struct{}, timeout time.Duration) bool {
	tn := f.turns.wait(m.key, changed)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tn.ready:
		return f.drain.Err() == nil
	case <-t.C:
	case <-m.ended:
	case <-ctx.Done():
	}
	f.turns.leave(m.key, tn)
	return false
}
