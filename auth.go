package sluice

import (
	"context"
	"errors"
)

// Op is what a request asks to do with a stream: the verbs a capability grants.
type Op string

// The operations on streams.
const (
	OpCreate  Op = "create"  // make a stream (PUT)
	OpPublish Op = "publish" // append to a stream (POST), creating it or closing it as the protocol says
	OpRead    Op = "read"    // follow or read a stream, or its metadata (GET, HEAD)
	OpClose   Op = "close"   // close a stream without adding bytes (DELETE)
	OpPurge   Op = "purge"   // delete a stream for good (DELETE ?purge=true)
	OpList    Op = "list"    // list the streams (the index page); key is ""
	OpMetrics Op = "metrics" // read the server's metrics; key is ""
)

// Errors an Authorizer returns.
var (
	// ErrUnauthorized means the request carries no valid credential: none, malformed,
	// expired or forged. It maps to 401.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the credential is valid but does not grant the operation on
	// the key. It maps to 403.
	ErrForbidden = errors.New("forbidden")
)

// Authorizer decides whether a request may do op on the stream of key. Every route of
// the server asks it before it touches the store, with the request's context, which
// carries what the caller presented (see WithCredentials). Its errors wrap
// ErrUnauthorized or ErrForbidden, and say nothing that helps a forger.
type Authorizer interface {
	Authorize(ctx context.Context, key string, op Op) error
}

// AllowAll is the Authorizer of an open server: every request may do anything.
type AllowAll struct{}

// Authorize allows op.
func (AllowAll) Authorize(context.Context, string, Op) error { return nil }

// Credentials are what a request presented to prove what it may do.
type Credentials struct {
	// Token is a bearer token: from an Authorization header, a ?token= query (for
	// EventSource and WebSocket, which cannot set headers), or the password of HTTP
	// Basic (busltee's URL user-info).
	Token string
	// User and Password are those of HTTP Basic, when the request used it.
	User, Password string
}

type credentialsKey struct{}

// WithCredentials returns ctx carrying c, for an Authorizer.
func WithCredentials(ctx context.Context, c Credentials) context.Context {
	return context.WithValue(ctx, credentialsKey{}, c)
}

// CredentialsFrom returns the credentials that ctx carries, if any.
func CredentialsFrom(ctx context.Context) Credentials {
	c, _ := ctx.Value(credentialsKey{}).(Credentials)
	return c
}
