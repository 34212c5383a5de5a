package http

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limits bound what one client address may ask of the server: requests a second (a
// token bucket, golang.org/x/time/rate) and requests at once, long-lived followers
// included, until they end. A client over either gets 429 with Retry-After. The state
// of a client is forgotten once it is idle, so memory follows the clients of the last
// minutes.
type limits struct {
	rate     rate.Limit
	burst    int
	maxConc  int
	mu       sync.Mutex
	clients  map[string]*client
	lastPass time.Time
}

type client struct {
	lim    *rate.Limiter
	active int
	seen   time.Time
}

// idleClient is how long a client's state outlives its last request.
const idleClient = 5 * time.Minute

func newLimits(perSecond float64, burst, maxConc int) *limits {
	l := &limits{rate: rate.Limit(perSecond), burst: burst, maxConc: maxConc, clients: make(map[string]*client)}
	if perSecond <= 0 {
		l.rate = rate.Inf
	}
	if l.burst <= 0 {
		l.burst = max(1, int(math.Ceil(perSecond)))
	}
	return l
}

// admit counts a request of the client at addr. It returns the function that uncounts
// it, or how long the client should wait.
func (l *limits) admit(addr string, now time.Time) (release func(), wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(now)
	c := l.clients[addr]
	if c == nil {
		c = &client{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[addr] = c
	}
	c.seen = now
	if l.maxConc > 0 && c.active >= l.maxConc {
		return nil, 5 * time.Second
	}
	if r := c.lim.ReserveN(now, 1); !r.OK() || r.DelayFrom(now) > 0 {
		d := time.Second
		if r.OK() {
			d = r.DelayFrom(now)
			r.CancelAt(now)
		}
		return nil, d
	}
	c.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			c.active--
			c.seen = time.Now()
			l.mu.Unlock()
		})
	}, 0
}

// forget drops the clients idle for idleClient, at most once a minute; the caller holds
// l.mu.
func (l *limits) forget(now time.Time) {
	if now.Sub(l.lastPass) < time.Minute {
		return
	}
	l.lastPass = now
	for addr, c := range l.clients {
		if c.active == 0 && now.Sub(c.seen) > idleClient {
			delete(l.clients, addr)
		}
	}
}

// clientAddr is the address of the client: the connection's peer, or, behind a
// balancer (TrustProxy), the last address of X-Forwarded-For, which the balancer added.
func (s *Server) clientAddr(r *http.Request) string {
	if s.cfg.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if a := strings.TrimSpace(parts[len(parts)-1]); a != "" {
				return a
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// tooMany answers 429 with how long to wait.
func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	http.Error(w, "too many requests from this address; retry later", http.StatusTooManyRequests)
}
