package jwt

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/sluicehq/sluice"
)

// Authorizer decides with capability tokens what a request may do: it implements
// sluice.Authorizer.
//
// Without a Verifier (no key configured: a busl deployment's CREDS alone), no token is
// accepted and the publish credentials are the only capability: they guard every
// write (purge included: no token can grant it) and everything else is open, as it was
// in busl.
type Authorizer struct {
	// Verifier checks the tokens; nil accepts none.
	Verifier *Verifier
	// PublicRead lets anyone read any stream (public logs), tokens aside.
	PublicRead bool
	// PublishUser and PublishPassword, if PublishUser is set, let a request with these
	// HTTP Basic credentials create, publish to and close streams, as busl's CREDS did:
	// a deployment migrating from busl keeps its producers' URLs.
	PublishUser, PublishPassword string
}

var _ sluice.Authorizer = (*Authorizer)(nil)

// Authorize allows op on key if the request's token grants it (ErrUnauthorized without
// a valid one, ErrForbidden if it does not grant it), or if the server's rules do.
func (a *Authorizer) Authorize(ctx context.Context, key string, op sluice.Op) error {
	if a.PublicRead && op == sluice.OpRead {
		return nil
	}
	c := sluice.CredentialsFrom(ctx)
	if a.PublishUser != "" && writeOp(op) && a.publishCredentials(c) {
		return nil
	}
	if a.Verifier == nil {
		switch {
		case !writeOp(op) && op != sluice.OpPurge:
			return nil
		case a.PublishUser != "" && a.publishCredentials(c):
			return nil
		}
		return errCredentials
	}
	if c.Token == "" {
		return errToken
	}
	g, _, err := a.Verifier.Verify(c.Token)
	if err != nil {
		return err
	}
	if !g.Allows(key, op) {
		return fmt.Errorf("%w: the token does not allow %s here", sluice.ErrForbidden, op)
	}
	return nil
}

func writeOp(op sluice.Op) bool {
	return op == sluice.OpCreate || op == sluice.OpPublish || op == sluice.OpClose
}

// publishCredentials reports whether c are the publish credentials, in constant time.
func (a *Authorizer) publishCredentials(c sluice.Credentials) bool {
	u := subtle.ConstantTimeCompare([]byte(c.User), []byte(a.PublishUser))
	p := subtle.ConstantTimeCompare([]byte(c.Password), []byte(a.PublishPassword))
	return u&p == 1
}
