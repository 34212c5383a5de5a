//go:build !linux

package bench

import (
	"errors"
	"time"
)

// procSample needs Linux's /proc.
func procSample(pid int) (Sample, error) {
	return Sample{Time: time.Now()}, errors.New("reading a process's figures needs Linux's /proc")
}
