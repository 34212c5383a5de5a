//go:build !unix

package bench

import "time"

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE; 0 means unknown.
func RaiseFileLimit() (uint64, error) { return 0, nil }

// selfCPU is unknown here.
func selfCPU() time.Duration { return 0 }
