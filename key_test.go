package sluice

import (
	"errors"
	"strings"
	"testing"
)

func TestValidKey(t *testing.T) {
	valid := []string{"a", "app/builds/1234", "0b8f-uuid", "A.b_c~d-e", "...", "a/.b/c.", strings.Repeat("k", MaxKeyLen)}
	for _, k := range valid {
		if err := ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v, want nil", k, err)
		}
	}
	invalid := []string{"", "/", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b", "a b", "a%2Fb", "ü",
		"a\x00", "a?b", "a#b", strings.Repeat("k", MaxKeyLen+1)}
	for _, k := range invalid {
		if err := ValidKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// FuzzValidKey checks that a key accepted by ValidKey can never escape a directory or
// alias another key: it has no empty, "." or ".." segment and only safe bytes.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a/b", "..", "a//b", "a/./b", "x/../../etc/passwd", "%2e%2e", "~/.ssh"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidKey(key) != nil {
			return
		}
		if len(key) == 0 || len(key) > MaxKeyLen {
			t.Fatalf("accepted length %d", len(key))
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted segment %q in %q", seg, key)
			}
			for i := 0; i < len(seg); i++ {
				if !keyByte(seg[i]) {
					t.Fatalf("accepted byte %q in %q", seg[i], key)
				}
			}
		}
	})
}
