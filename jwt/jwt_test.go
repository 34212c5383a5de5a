package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func pemOf(t testing.TB, kind string, der []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

// keyPairs returns PEM key pairs for ES256 and EdDSA.
func keyPairs(t testing.TB) map[string][2][]byte {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, err1 := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, err2 := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	edPrivDER, err3 := x509.MarshalPKCS8PrivateKey(edPriv)
	edPubDER, err4 := x509.MarshalPKIXPublicKey(edPub)
	return map[string][2][]byte{
		"ES256": {pemOf(t, "PRIVATE KEY", ecPriv, err1), pemOf(t, "PUBLIC KEY", ecPub, err2)},
		"EdDSA": {pemOf(t, "PRIVATE KEY", edPrivDER, err3), pemOf(t, "PUBLIC KEY", edPubDER, err4)},
	}
}

// TestMintVerify proves a token minted with each kind of key verifies with it, carries
// its grant and expiry, and fails, with ErrUnauthorized and one reason, once expired,
// altered, signed with another key, or unsigned.
func TestMintVerify(t *testing.T) {
	g := Grant{Allow: []sluice.Op{sluice.OpPublish, sluice.OpRead}, Prefixes: []string{"app/builds/"}, Keys: []string{"notes"}}
	hs, _ := NewSigner(testKey)
	signers := map[string]*Signer{"HS256": hs}
	verifiers := map[string]*Verifier{}
	verifiers["HS256"], _ = NewVerifier(testKey)
	for alg, kp := range keyPairs(t) {
		s, err := NewPrivateSigner(kp[0])
		if err != nil {
			t.Fatal(alg, err)
		}
		signers[alg] = s
		if verifiers[alg], err = NewVerifier(nil, kp[1]); err != nil {
			t.Fatal(alg, err)
		}
	}
	other, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	for alg, s := range signers {
		tok, err := s.Mint(g, time.Hour)
		if err != nil {
			t.Fatal(alg, err)
		}
		got, exp, err := verifiers[alg].Verify(tok)
		if err != nil || !got.Allows("app/builds/42", sluice.OpPublish) || time.Until(exp) < 59*time.Minute {
			t.Fatalf("%s: Verify = %+v, %v, %v", alg, got, exp, err)
		}
		bad := map[string]string{
			"expired":   mustMint(t, s, g, -time.Hour),
			"altered":   alter(tok),
			"truncated": tok[:len(tok)-3],
			"other key": mustMint(t, other, g, time.Hour),
			"unsigned":  unsigned(t, g),
			"garbage":   "not.a.token",
		}
		for name, b := range bad {
			if _, _, err := verifiers[alg].Verify(b); !errors.Is(err, sluice.ErrUnauthorized) || err != errToken {
				t.Errorf("%s, %s token: Verify = %v, want the one ErrUnauthorized", alg, name, err)
			}
		}
	}
	// A token for one kind of key does not verify with another's verifier.
	es, _ := signers["ES256"].Mint(g, time.Hour)
	if _, _, err := verifiers["HS256"].Verify(es); !errors.Is(err, sluice.ErrUnauthorized) {
		t.Errorf("an ES256 token verified with a shared key: %v", err)
	}
}

func mustMint(t *testing.T, s *Signer, g Grant, ttl time.Duration) string {
	t.Helper()
	if ttl > 0 {
		tok, err := s.Mint(g, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	c := claims{RegisteredClaims: gojwt.RegisteredClaims{ExpiresAt: gojwt.NewNumericDate(time.Now().Add(ttl))}, Allow: g.Allow, Prefixes: g.Prefixes}
	tok, err := gojwt.NewWithClaims(s.method, c).SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// alter changes the token's claims, keeping its signature: a grant of everything.
func alter(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"exp":4102444800,"allow":["purge"],"prefixes":[""]}`))
	return strings.Join(parts, ".")
}

func unsigned(t *testing.T, g Grant) string {
	c := claims{RegisteredClaims: gojwt.RegisteredClaims{ExpiresAt: gojwt.NewNumericDate(time.Now().Add(time.Hour))}, Allow: g.Allow, Prefixes: []string{""}}
	tok, err := gojwt.NewWithClaims(gojwt.SigningMethodNone, c).SignedString(gojwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestGrantAllows proves a grant's reach: its verbs only, on its keys and the keys under
// its prefixes; a random key and the index only with the prefix "" (every key).
func TestGrantAllows(t *testing.T) {
	g := Grant{Allow: []sluice.Op{sluice.OpRead, sluice.OpPublish}, Prefixes: []string{"app/builds/"}, Keys: []string{"notes"}}
	all := Grant{Allow: []sluice.Op{sluice.OpRead, sluice.OpCreate}, Prefixes: []string{""}}
	for _, c := range []struct {
		g    Grant
		key  string
		op   sluice.Op
		want bool
	}{
		{g, "app/builds/42", sluice.OpRead, true},
		{g, "app/builds/42/log", sluice.OpPublish, true},
		{g, "app/builds", sluice.OpRead, false},
		{g, "app/other", sluice.OpRead, false},
		{g, "notes", sluice.OpPublish, true},
		{g, "notes/2", sluice.OpPublish, false},
		{g, "app/builds/42", sluice.OpPurge, false},
		{g, "app/builds/42", sluice.OpClose, false},
		{g, "", sluice.OpCreate, false},
		{g, "", sluice.OpList, false},
		{all, "", sluice.OpCreate, true},
		{all, "", sluice.OpList, true},
		{all, "x", sluice.OpPublish, false},
	} {
		if got := c.g.Allows(c.key, c.op); got != c.want {
			t.Errorf("%+v.Allows(%q, %s) = %v, want %v", c.g, c.key, c.op, got, c.want)
		}
	}
}

// TestAuthorizer proves the rules of an Authorizer: no token is 401, a token that does
// not grant the verb or key 403; public reads need none; busl's publish credentials
// create, publish and close, and nothing else.
func TestAuthorizer(t *testing.T) {
	v, _ := NewVerifier(testKey)
	s, _ := NewSigner(testKey)
	tok, _ := s.Mint(Grant{Allow: []sluice.Op{sluice.OpRead}, Prefixes: []string{"a/"}}, time.Hour)
	a := &Authorizer{Verifier: v, PublishUser: "ci", PublishPassword: "s3cret"}
	with := func(c sluice.Credentials) context.Context { return sluice.WithCredentials(context.Background(), c) }
	for _, c := range []struct {
		name string
		c    sluice.Credentials
		key  string
		op   sluice.Op
		want error
	}{
		{"no token", sluice.Credentials{}, "a/1", sluice.OpRead, sluice.ErrUnauthorized},
		{"forged", sluice.Credentials{Token: "x.y.z"}, "a/1", sluice.OpRead, sluice.ErrUnauthorized},
		{"right", sluice.Credentials{Token: tok}, "a/1", sluice.OpRead, nil},
		{"wrong verb", sluice.Credentials{Token: tok}, "a/1", sluice.OpPublish, sluice.ErrForbidden},
		{"wrong key", sluice.Credentials{Token: tok}, "b/1", sluice.OpRead, sluice.ErrForbidden},
		{"publish credentials", sluice.Credentials{User: "ci", Password: "s3cret"}, "b/1", sluice.OpPublish, nil},
		{"publish credentials close", sluice.Credentials{User: "ci", Password: "s3cret"}, "b/1", sluice.OpClose, nil},
		{"publish credentials read", sluice.Credentials{User: "ci", Password: "s3cret", Token: "s3cret"}, "b/1", sluice.OpRead, sluice.ErrUnauthorized},
		{"publish credentials purge", sluice.Credentials{User: "ci", Password: "s3cret", Token: "s3cret"}, "b/1", sluice.OpPurge, sluice.ErrUnauthorized},
		{"wrong password", sluice.Credentials{User: "ci", Password: "guess", Token: "guess"}, "b/1", sluice.OpPublish, sluice.ErrUnauthorized},
	} {
		if err := a.Authorize(with(c.c), c.key, c.op); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: Authorize = %v, want %v", c.name, err, c.want)
		}
	}
	a.PublicRead = true
	if err := a.Authorize(with(sluice.Credentials{}), "b/1", sluice.OpRead); err != nil {
		t.Errorf("public read: %v", err)
	}
	if err := a.Authorize(with(sluice.Credentials{}), "b/1", sluice.OpPublish); !errors.Is(err, sluice.ErrUnauthorized) {
		t.Errorf("public read lets a publish through: %v", err)
	}
}

// TestAuthorizerWithoutKey: with publish credentials and no key (busl's CREDS), the
// credentials guard every write, purge included (with a key, a token grants purges);
// tokens are not accepted (none could be
// checked); reading, listing and metrics stay open.
func TestAuthorizerWithoutKey(t *testing.T) {
	s, _ := NewSigner(testKey)
	tok, _ := s.Mint(Grant{Allow: Verbs, Prefixes: []string{""}}, time.Hour)
	a := &Authorizer{PublishUser: "ci", PublishPassword: "s3cret"}
	creds := sluice.Credentials{User: "ci", Password: "s3cret"}
	for _, op := range []sluice.Op{sluice.OpCreate, sluice.OpPublish, sluice.OpClose, sluice.OpPurge} {
		ctx := sluice.WithCredentials(context.Background(), sluice.Credentials{Token: tok})
		if err := a.Authorize(ctx, "b/1", op); !errors.Is(err, sluice.ErrUnauthorized) {
			t.Errorf("%s with a token and no credentials: %v, want ErrUnauthorized", op, err)
		}
		if err := a.Authorize(sluice.WithCredentials(context.Background(), creds), "b/1", op); err != nil {
			t.Errorf("%s with the credentials: %v", op, err)
		}
	}
	for _, op := range []sluice.Op{sluice.OpRead, sluice.OpList, sluice.OpMetrics} {
		if err := a.Authorize(context.Background(), "b/1", op); err != nil {
			t.Errorf("%s with nothing: %v, want it open", op, err)
		}
	}
}

// TestKeys proves keys are checked: a shared key of fewer than 32 bytes, and PEM that is
// not a P-256 or Ed25519 public key, are refused.
func TestKeys(t *testing.T) {
	if _, err := NewVerifier([]byte("short")); err == nil {
		t.Error("a 5-byte shared key was accepted")
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a 5-byte shared key was accepted for minting")
	}
	if _, err := NewVerifier(nil, []byte("not pem")); err == nil {
		t.Error("a public key that is not PEM was accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if _, err := NewVerifier(nil, pemOf(t, "PUBLIC KEY", der, err)); err == nil {
		t.Error("a P-384 key was accepted for ES256")
	}
	if _, err := NewVerifier(nil); err == nil {
		t.Error("a verifier without keys was made")
	}
}

// FuzzVerify proves Verify never panics, and refuses every token not minted by the key
// with the one ErrUnauthorized.
func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(testKey)
	good, _ := s.Mint(Grant{Allow: []sluice.Op{sluice.OpRead}, Prefixes: []string{""}}, time.Hour)
	for _, tok := range []string{good, alter(good), "", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", good + "x", strings.Repeat("A", 5000)} {
		f.Add(tok)
	}
	v, _ := NewVerifier(testKey)
	f.Fuzz(func(t *testing.T, tok string) {
		_, _, err := v.Verify(tok)
		if err != nil && err != errToken {
			t.Fatalf("Verify(%q) = %v, want errToken or nil", tok, err)
		}
		if err == nil && tok != good && !strings.HasPrefix(tok, strings.SplitN(good, ".", 3)[0]) {
			t.Fatalf("Verify accepted %q", tok)
		}
	})
}
