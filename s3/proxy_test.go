package s3_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a reverse proxy in front of versitygw that injects faults: it can answer
// 500 to everything, or go away (stop listening, cutting every connection) and come
// back on the same port. It counts object GETs, so tests can see what reads cost.
type proxy struct {
	t      testing.TB
	addr   string
	rp     *httputil.ReverseProxy
	fail   atomic.Bool
	parts  atomic.Int64             // UploadPart requests seen
	onPart func(n int64) (cut bool) // set before the proxy is used

	mu     sync.Mutex
	srv    *http.Server
	done   chan struct{}
	gets   []string // Range headers of object GETs ("" for none)
	object string   // the object name whose GETs are counted
}

func newProxy(t testing.TB) *proxy {
	target, _ := url.Parse("http://" + gateway)
	p := &proxy{t: t, rp: httputil.NewSingleHostReverseProxy(target)}
	p.rp.FlushInterval = -1
	p.rp.Transport = &http.Transport{}
	p.rp.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.rp.Transport.(*http.Transport).CloseIdleConnections()
	})
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
		n := p.parts.Add(1)
		if p.onPart != nil && p.onPart(n) {
			panic(http.ErrAbortHandler)
		}
	}
	if r.Method == http.MethodGet {
		p.mu.Lock()
		if p.object != "" && strings.HasSuffix(r.URL.Path, "/"+p.object) {
			p.gets = append(p.gets, r.Header.Get("Range"))
		}
		p.mu.Unlock()
	}
	if p.fail.Load() {
		http.Error(w, "injected fault", http.StatusInternalServerError)
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *proxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: p}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	p.mu.Lock()
	p.srv, p.done = srv, done
	p.mu.Unlock()
}

// down stops listening and cuts every connection, as a crashed server would.
func (p *proxy) down() {
	p.mu.Lock()
	srv, done := p.srv, p.done
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

// up listens again on the same port.
func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("re-listen on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// countGets starts counting GETs of object afresh.
func (p *proxy) countGets(object string) {
	p.mu.Lock()
	p.object, p.gets = object, nil
	p.mu.Unlock()
}

func (p *proxy) getRanges() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.gets...)
}
