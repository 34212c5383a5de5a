package http

import (
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/fanout"
)

// raw sends a stream's bytes exactly as published, nothing added in-band.
type raw struct {
	wire  *fanout.Wire
	probe time.Duration
}

func (t *raw) Write(b []byte, off int64, info sluice.Info, final bool) (int, error) {
	return t.wire.Write(b)
}

func (t *raw) Flush() error { return t.wire.Flush() }

// Keepalive writes nothing (raw bytes have no room for it): it only checks that the
// follower is still there, so a vanished one does not wait for the stream's next byte.
func (t *raw) Keepalive() error {
	if !t.wire.Alive() {
		return fanout.ErrGone
	}
	return nil
}

func (t *raw) Idle() time.Duration { return t.probe }
