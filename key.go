package sluice

import (
	"errors"
	"fmt"
)

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 512

// ErrInvalidKey is wrapped by ValidKey's errors.
var ErrInvalidKey = errors.New("invalid stream key")

// ValidKey reports why key is not a valid stream key, or nil. A key is one or more
// segments joined by '/', each of [A-Za-z0-9._~-], none empty, "." or "..", at most
// MaxKeyLen bytes in all. The check applies to the percent-decoded key, so that
// "%2e%2e" cannot name a parent directory and no router can clean it into another stream.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !keyByte(key[i]) {
				return fmt.Errorf("%w: byte %q at %d is not one of A-Z a-z 0-9 . _ ~ - /", ErrInvalidKey, key[i], i)
			}
			continue
		}
		switch seg := key[start:i]; seg {
		case "":
			return fmt.Errorf("%w: empty segment at %d", ErrInvalidKey, start)
		case ".", "..":
			return fmt.Errorf("%w: segment %q", ErrInvalidKey, seg)
		}
		start = i + 1
	}
	return nil
}

func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == '-'
}
