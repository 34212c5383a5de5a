package sluice

import (
	"bytes"
	"fmt"
)

// Admit applies the rule of Stream.Append to p at off, before anything is stored, for a
// stream whose state is info: bytes of p below the length are stored already, so they
// are checked with verify (see Verify) and skipped. It returns the rest, the new bytes,
// which the store then stores at the length; none means there is nothing to store.
// Errors wrap ErrGap, ErrClosed, or ErrTooLarge when the stream would grow beyond
// maxSize (if positive), or else come from verify. Every store applies this one rule,
// so that they agree on what "nothing lost, nothing doubled" means.
func (info Info) Admit(off int64, p []byte, maxSize int64, verify func(off int64, old []byte) error) ([]byte, error) {
	if off > info.Length {
		return nil, fmt.Errorf("at %d, length %d: %w", off, info.Length, ErrGap)
	}
	if skip := info.Length - off; skip > 0 {
		old := p[:min(int64(len(p)), skip)]
		if err := verify(off, old); err != nil {
			return nil, err
		}
		p = p[len(old):]
	}
	switch {
	case len(p) == 0:
		return nil, nil
	case info.Closed:
		return nil, ErrClosed
	case maxSize > 0 && info.Length+int64(len(p)) > maxSize:
		return nil, fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, maxSize)
	}
	return p, nil
}

// Verify checks that p matches the stored bytes at off, which read returns a piece at a
// time, so that a producer resending different bytes for the same offsets gets
// ErrMismatch instead of a silent fork.
func Verify(off int64, p []byte, read func(off int64) ([]byte, error)) error {
	for len(p) > 0 {
		b, err := read(off)
		if err != nil {
			return fmt.Errorf("verify at %d: %w", off, err)
		}
		if len(b) == 0 {
			return fmt.Errorf("verify at %d: no bytes", off)
		}
		n := min(len(b), len(p))
		if !bytes.Equal(b[:n], p[:n]) {
			return fmt.Errorf("at %d: %w", off, ErrMismatch)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}
