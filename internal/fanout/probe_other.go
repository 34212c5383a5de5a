//go:build !linux

package fanout

import "net"

// alive cannot look at the socket without blocking here; a vanished follower is noticed
// at its next write instead.
func alive(c net.Conn) bool { return true }
