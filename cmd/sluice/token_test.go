package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jwt"
)

// TestToken proves that sluice token mints what it is asked for: a token that the
// server's Verifier of the same key accepts, granting the verbs on the keys and prefixes
// given and nothing else, until --ttl; signed with --private-key, the issuer's public
// key verifies it.
func TestToken(t *testing.T) {
	clearEnv(t)
	key := strings.Repeat("k", 32)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--auth-key", key, "--prefix", "app/", "--key", "notes", "--allow", "publish,read", "--ttl", "2h"}, &out, &out); err != nil {
		t.Fatalf("sluice token: %v %s", err, out.Bytes())
	}
	v, _ := jwt.NewVerifier([]byte(key))
	g, exp, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("the server's verifier refuses the token: %v", err)
	}
	if d := time.Until(exp); d < time.Hour+59*time.Minute || d > 2*time.Hour {
		t.Errorf("the token expires in %v, want 2h", d)
	}
	for _, c := range []struct {
		key  string
		op   sluice.Op
		want bool
	}{
		{"app/1", sluice.OpPublish, true}, {"notes", sluice.OpRead, true},
		{"app/1", sluice.OpPurge, false}, {"other", sluice.OpRead, false}, {"notes/x", sluice.OpRead, false},
	} {
		if got := g.Allows(c.key, c.op); got != c.want {
			t.Errorf("the token allows %s on %s: %v, want %v", c.op, c.key, got, c.want)
		}
	}

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	privFile := filepath.Join(t.TempDir(), "issuer.pem")
	os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"token", "--private-key", privFile, "--prefix", "", "--allow", "metrics"}, &out, &out); err != nil {
		t.Fatalf("sluice token --private-key: %v %s", err, out.Bytes())
	}
	v, _ = jwt.NewVerifier(nil, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	if g, _, err := v.Verify(strings.TrimSpace(out.String())); err != nil || !g.Allows("", sluice.OpMetrics) {
		t.Errorf("the issuer's public key: grant %+v, %v; want metrics everywhere", g, err)
	}
}

// TestTokenErrors: a token that cannot be minted as asked is a usage error (exit 2)
// that says why, and prints no token.
func TestTokenErrors(t *testing.T) {
	clearEnv(t)
	key := strings.Repeat("k", 32)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--prefix", "a/", "--allow", "read"}, "no key"},
		{[]string{"--auth-key", "short", "--prefix", "a/", "--allow", "read"}, "at least 32"},
		{[]string{"--auth-key", key, "--allow", "read"}, "keys or prefixes"},
		{[]string{"--auth-key", key, "--prefix", "a/", "--allow", "read,steal"}, `unknown verb "steal"`},
		{[]string{"--auth-key", key, "--prefix", "a/", "--allow", "read", "--ttl=-1h"}, "positive lifetime"},
		{[]string{"--auth-key", key, "--prefix", "a/"}, "--allow"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"token"}, c.args...), &stdout, &stderr)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), c.want) || stdout.Len() > 0 {
			t.Errorf("sluice token %v: %v (exit %d), stdout %q; want exit 2 with %q", c.args, err, exitCode(err), stdout.String(), c.want)
		}
	}
}
