package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// target is the one server a run talks to: every connection goes to its host and port,
// from one of the local source addresses, if any were given.
type target struct {
	base     *url.URL // scheme://host[:port][/prefix], no trailing slash
	hostport string
	sources  []net.IP
	timeout  time.Duration // dial and response-head timeout
	proto    string        // the protocol spoken: busl, nchan or durable-streams (protocol.go)

	mu         sync.Mutex
	transports map[int]*http.Transport // for WebSocket dials and scrapes, by source
}

// newTarget checks rawURL (http or https, no query) and the source addresses.
func newTarget(rawURL string, sources []string, timeout time.Duration) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("target URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target URL %q: want http(s)://host[:port][/prefix]", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	t := &target{base: u, hostport: net.JoinHostPort(u.Hostname(), port), timeout: timeout, proto: ProtocolBusl,
		transports: make(map[int]*http.Transport)}
	for _, s := range sources {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("source address %q is not an IP address", s)
		}
		t.sources = append(t.sources, ip)
	}
	return t, nil
}

// SourceAddrs expands the --source-addrs flag: a count n means the n loopback addresses
// 127.0.0.2 .. 127.0.0.(n+1) (each gives another ~28,000 ephemeral ports); anything else
// is a comma-separated list of local IP addresses. Empty means the system's choice.
func SourceAddrs(spec string) ([]string, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "0" {
		return nil, nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 0 || n > 250 {
			return nil, fmt.Errorf("source addresses: %d is not between 0 and 250", n)
		}
		addrs := make([]string, n)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("127.0.0.%d", i+2)
		}
		return addrs, nil
	}
	var addrs []string
	for _, s := range strings.Split(spec, ",") {
		if net.ParseIP(strings.TrimSpace(s)) == nil {
			return nil, fmt.Errorf("source address %q is not an IP address", s)
		}
		addrs = append(addrs, strings.TrimSpace(s))
	}
	return addrs, nil
}

// url returns the URL of path (which starts with a slash) under the target's base URL.
func (t *target) url(path string) string {
	return t.base.Scheme + "://" + t.base.Host + t.base.Path + path
}

// streamPath is the request path of a stream: /streams/{key} under the base URL's path.
func streamPath(key string) string { return "/streams/" + key }

// durablePrefix is where streams are in Durable Streams: /v1/stream/{key}, as on Sluice
// and the protocol's reference servers.
const durablePrefix = "/v1/stream/"

// subPath is where a stream's followers go: the stream itself in busl and Durable
// Streams; on Nchan, its channel's subscriber location, /sub/{key} (as in
// deploy/nchan-bench.conf).
func (t *target) subPath(key string) string {
	switch t.proto {
	case protocolNchan:
		return "/sub/" + key
	case ProtocolDurable:
		return durablePrefix + key
	}
	return streamPath(key)
}

// pubPath is where a stream's producer publishes: the stream itself in busl and Durable
// Streams; on Nchan, its channel's publisher location, /pub/{key}.
func (t *target) pubPath(key string) string {
	if t.proto == protocolNchan {
		return "/pub/" + key
	}
	return t.subPath(key)
}

// netDialer returns the dialer for connection i, bound to its source address.
func (t *target) netDialer(i int) *net.Dialer {
	d := &net.Dialer{Timeout: t.timeout, KeepAlive: -1}
	if len(t.sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: t.sources[i%len(t.sources)]}
	}
	return d
}

// dial connects connection i to the target, over TLS for https. tcp is the TCP
// connection beneath, for SetLinger.
func (t *target) dial(ctx context.Context, i int) (c net.Conn, tcp *net.TCPConn, err error) {
	c, err = t.netDialer(i).DialContext(ctx, "tcp", t.hostport)
	if err != nil {
		return nil, nil, err
	}
	tcp, _ = c.(*net.TCPConn)
	if t.base.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: t.base.Hostname(), NextProtos: []string{"http/1.1"}})
		tc.SetDeadline(time.Now().Add(t.timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, nil, err
		}
		c = tc
	}
	return c, tcp, nil
}

// transport returns an http.Transport whose connections come from connection i's source
// address: one per source, shared.
func (t *target) transport(i int) *http.Transport {
	k := 0
	if len(t.sources) > 0 {
		k = i % len(t.sources)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.transports[k]
	if tr == nil {
		tr = &http.Transport{
			DialContext:           t.netDialer(k).DialContext,
			TLSHandshakeTimeout:   t.timeout,
			ResponseHeaderTimeout: t.timeout,
			MaxIdleConnsPerHost:   1, // the scrapes'; idle connections cost the server a goroutine
			IdleConnTimeout:       30 * time.Second,
			ForceAttemptHTTP2:     false,
			ReadBufferSize:        4 << 10,
			WriteBufferSize:       4 << 10,
		}
		t.transports[k] = tr
	}
	return tr
}

// client is a plain HTTP client for small requests (create, metrics), from the first
// source address.
func (t *target) client() *http.Client {
	return &http.Client{Transport: t.transport(0), Timeout: t.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// close drops idle connections of the shared transports.
func (t *target) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.transports {
		tr.CloseIdleConnections()
	}
}

// createStream creates key with PUT (201, or 200 if it exists); in Durable Streams, as
// a stream of text (durableContentType).
func (t *target) createStream(ctx context.Context, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.url(t.pubPath(key)), nil)
	if err != nil {
		return err
	}
	if t.proto == ProtocolDurable {
		req.Header.Set("Content-Type", durableContentType)
	}
	resp, err := t.client().Do(req)
	if err != nil {
		return fmt.Errorf("create stream %s: %w", key, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create stream %s: %s", key, resp.Status)
	}
	return nil
}
