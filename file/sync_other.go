//go:build !linux

package file

import "errors"

// syncsWhole reports false: only Linux has syncfs(2), so each file is fsynced.
func syncsWhole(string) bool { return false }

func syncfs(string) error { return errors.ErrUnsupported }
