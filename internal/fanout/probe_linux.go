package fanout

import (
	"net"
	"syscall"
)

// alive reports whether the peer of c is still there, without blocking and without a
// goroutine parked in Read: it drains whatever the client sent (followers of raw and SSE
// responses send nothing that matters) and looks for an end of file or a reset.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	up := true
	var buf [512]byte
	err = rc.Read(func(fd uintptr) bool {
		for range 64 { // a client that keeps talking is alive; stop draining it some time
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_DONTWAIT)
			switch {
			case n > 0 || err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				up = true
			default: // 0 bytes: the peer closed; or a reset
				up = false
			}
			return true
		}
		return true
	})
	return up && err == nil
}
