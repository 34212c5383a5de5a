// Package jwt is Sluice's capability tokens: JSON Web Tokens (github.com/golang-jwt/jwt)
// that grant verbs (sluice.Op: create, publish, read, close, purge, metrics) on stream
// keys or key prefixes until they expire, signed with a shared key (HS256) or by an
// issuer that keeps its private key (ES256, EdDSA), and the sluice.Authorizer that
// checks them.
//
// A token's claims, beside the registered ones (exp is required):
//
//	{"exp": 1767225600, "allow": ["publish", "read"], "prefixes": ["app/builds/"], "keys": ["app/notes"]}
//
// grants publish and read on every key that starts with app/builds/, and on app/notes.
// The prefix "" is every key. Listing the streams (the index) needs read on every key.
package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice"
)

// MinKeySize is the shortest shared key accepted, in bytes: HS256 is as strong as its
// key, and RFC 7518 asks for at least the hash's size.
const MinKeySize = 32

// Verbs are the operations a token may grant.
var Verbs = []sluice.Op{sluice.OpCreate, sluice.OpPublish, sluice.OpRead, sluice.OpClose, sluice.OpPurge, sluice.OpMetrics}

// Grant is what a token allows: its verbs on its keys and on the keys under its
// prefixes.
type Grant struct {
	Allow    []sluice.Op
	Keys     []string
	Prefixes []string
}

// Allows reports whether the grant allows op on key. Listing the streams (OpList) is
// reading every key; a create of a key of the server's choosing (key "") is a create
// anywhere.
func (g Grant) Allows(key string, op sluice.Op) bool {
	if op == sluice.OpList {
		return slices.Contains(g.Allow, sluice.OpRead) && slices.Contains(g.Prefixes, "")
	}
	if !slices.Contains(g.Allow, op) {
		return false
	}
	if key == "" { // a key of the server's choosing, or the server itself (metrics)
		return slices.Contains(g.Prefixes, "")
	}
	if slices.Contains(g.Keys, key) {
		return true
	}
	return slices.ContainsFunc(g.Prefixes, func(p string) bool { return strings.HasPrefix(key, p) })
}

// claims are a token's claims.
type claims struct {
	gojwt.RegisteredClaims
	Allow    []sluice.Op `json:"allow"`
	Keys     []string    `json:"keys,omitempty"`
	Prefixes []string    `json:"prefixes,omitempty"`
}

// errToken is every failure to verify a token: it says nothing that helps a forger.
var errToken = fmt.Errorf("%w: missing, malformed, expired or invalid token", sluice.ErrUnauthorized)

// errCredentials refuses a write without the publish credentials, on a server that has
// no key for tokens.
var errCredentials = fmt.Errorf("%w: missing or wrong publish credentials", sluice.ErrUnauthorized)

// Verifier checks tokens: their signature by one of its keys, their expiry, and their
// grant.
type Verifier struct {
	hmac   []byte
	public []gojwt.VerificationKey // *ecdsa.PublicKey (P-256) and ed25519.PublicKey
	parser *gojwt.Parser
}

// NewVerifier returns a Verifier of tokens signed with the shared key hmacKey (HS256;
// none if empty) or by the private key of one of publicPEMs (ES256 for P-256 keys,
// EdDSA for Ed25519 ones, in PEM).
func NewVerifier(hmacKey []byte, publicPEMs ...[]byte) (*Verifier, error) {
	v := &Verifier{}
	var methods []string
	if len(hmacKey) > 0 {
		if len(hmacKey) < MinKeySize {
			return nil, fmt.Errorf("auth key: %d bytes, want at least %d", len(hmacKey), MinKeySize)
		}
		v.hmac = hmacKey
		methods = append(methods, gojwt.SigningMethodHS256.Alg())
	}
	for i, pem := range publicPEMs {
		key, method, err := parsePublic(pem)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", i+1, err)
		}
		v.public = append(v.public, key)
		if !slices.Contains(methods, method) {
			methods = append(methods, method)
		}
	}
	if len(methods) == 0 {
		return nil, errors.New("no key to verify tokens with")
	}
	v.parser = gojwt.NewParser(gojwt.WithValidMethods(methods), gojwt.WithExpirationRequired(),
		gojwt.WithLeeway(5*time.Second))
	return v, nil
}

// parsePublic reads a PEM public key, and the signing method it verifies.
func parsePublic(pem []byte) (gojwt.VerificationKey, string, error) {
	if k, err := gojwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		if _, ok := k.(ed25519.PublicKey); ok {
			return k, gojwt.SigningMethodEdDSA.Alg(), nil
		}
	}
	k, err := gojwt.ParseECPublicKeyFromPEM(pem)
	if err != nil {
		return nil, "", errors.New("not a PEM P-256 or Ed25519 public key")
	}
	if k.Curve != elliptic.P256() {
		return nil, "", errors.New("an ECDSA key must be on P-256 (ES256)")
	}
	return k, gojwt.SigningMethodES256.Alg(), nil
}

// Verify checks token and returns its grant and expiry. Every failure wraps
// sluice.ErrUnauthorized, with the same reason.
func (v *Verifier) Verify(token string) (Grant, time.Time, error) {
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *gojwt.Token) (any, error) {
		switch t.Method.(type) {
		case *gojwt.SigningMethodHMAC:
			return v.hmac, nil
		default:
			return gojwt.VerificationKeySet{Keys: v.public}, nil
		}
	})
	if err != nil || c.ExpiresAt == nil {
		return Grant{}, time.Time{}, errToken
	}
	return Grant{Allow: c.Allow, Keys: c.Keys, Prefixes: c.Prefixes}, c.ExpiresAt.Time, nil
}

// Signer mints tokens.
type Signer struct {
	method gojwt.SigningMethod
	key    any
}

// NewSigner returns a Signer with the shared key (HS256).
func NewSigner(hmacKey []byte) (*Signer, error) {
	if len(hmacKey) < MinKeySize {
		return nil, fmt.Errorf("auth key: %d bytes, want at least %d", len(hmacKey), MinKeySize)
	}
	return &Signer{method: gojwt.SigningMethodHS256, key: hmacKey}, nil
}

// NewPrivateSigner returns a Signer with a P-256 (ES256) or Ed25519 (EdDSA) private
// key in PEM, for an issuer whose Sluice servers hold only the public key.
func NewPrivateSigner(privatePEM []byte) (*Signer, error) {
	if k, err := gojwt.ParseEdPrivateKeyFromPEM(privatePEM); err == nil {
		if _, ok := k.(ed25519.PrivateKey); ok {
			return &Signer{method: gojwt.SigningMethodEdDSA, key: k}, nil
		}
	}
	k, err := gojwt.ParseECPrivateKeyFromPEM(privatePEM)
	if err != nil || k.Curve != elliptic.P256() {
		return nil, errors.New("not a PEM P-256 or Ed25519 private key")
	}
	return &Signer{method: gojwt.SigningMethodES256, key: k}, nil
}

// Mint returns a token of grant g that expires ttl from now.
func (s *Signer) Mint(g Grant, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", errors.New("a token needs a positive lifetime")
	}
	if len(g.Allow) == 0 || len(g.Keys)+len(g.Prefixes) == 0 {
		return "", errors.New("a token needs verbs, and keys or prefixes")
	}
	for _, op := range g.Allow {
		if !slices.Contains(Verbs, op) {
			return "", fmt.Errorf("unknown verb %q (want %s)", op, joinOps(Verbs))
		}
	}
	now := time.Now()
	c := claims{
		RegisteredClaims: gojwt.RegisteredClaims{IssuedAt: gojwt.NewNumericDate(now), ExpiresAt: gojwt.NewNumericDate(now.Add(ttl))},
		Allow:            g.Allow, Keys: g.Keys, Prefixes: g.Prefixes,
	}
	return gojwt.NewWithClaims(s.method, c).SignedString(s.key)
}

func joinOps(ops []sluice.Op) string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// Ensure the key types parsed are those the signing methods take.
var (
	_ crypto.PublicKey = (*ecdsa.PublicKey)(nil)
	_ crypto.PublicKey = ed25519.PublicKey(nil)
)
