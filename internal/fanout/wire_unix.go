//go:build unix

package fanout

import "syscall"

// canTry sets w up to write without waiting, where the connection allows it.
func (w *Wire) canTry() {
	sc, ok := w.conn.(syscall.Conn)
	if !ok {
		return
	}
	var err error
	if w.raw, err = sc.SyscallConn(); err == nil {
		w.tryFn = w.tryWrite
	} else {
		w.raw = nil
	}
}

// tryWrite writes w.pending without waiting; it is w.raw.Write's callback, made once
// per follower (a method value), so that a write allocates nothing.
func (w *Wire) tryWrite(fd uintptr) bool {
	w.written, w.writeErr = 0, nil
	for w.written < len(w.pending) {
		n, err := syscall.Write(int(fd), w.pending[w.written:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true // the rest waits, under the deadline
		case err != nil:
			w.writeErr = err
			return true
		}
		w.written += n
	}
	return true
}
