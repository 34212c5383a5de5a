package http

import "time"

// raw sends a stream's bytes exactly as published, nothing added in-band.
type raw struct {
	*wire
	probe time.Duration
}

func (t *raw) write(b []byte, off int64, final bool) (int, error) { return t.Write(b) }

// keepalive writes nothing (raw bytes have no room for it): it only checks that the
// follower is still there, so a vanished one does not wait for the stream's next byte.
func (t *raw) keepalive() error {
	if !alive(t.conn) {
		return errGone
	}
	return nil
}

func (t *raw) idle() time.Duration { return t.probe }
