// Package nettest has the network fakes and fixtures (a refusing server, certificates) that the tests share.
package nettest

import (
	"net"
	"sync/atomic"
	"testing"
)

// Refuser listens on loopback and closes every connection it accepts, counting them,
// until the test ends: a server that is there but never answers a request. It returns
// the server's http:// URL and the count.
func Refuser(t testing.TB) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "http://" + ln.Addr().String(), accepted
}
