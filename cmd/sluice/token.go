package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jwt"
)

// tokenCmd is sluice token: mints a capability token with the server's key.
type tokenCmd struct {
	authKeyFlags
	PrivateKey string        `placeholder:"FILE" predictor:"file" help:"PEM private key (P-256 or Ed25519) to sign with instead of the shared key, for servers given its public key (--auth-public-key)."`
	Prefix     []string      `sep:"none" placeholder:"PREFIX" help:"Key prefix the token is good for (app/builds/; \"\" for every key); repeatable."`
	Key        []string      `placeholder:"KEY" help:"Stream key the token is good for; repeatable."`
	Allow      []sluice.Op   `required:"" placeholder:"VERBS" help:"Comma-separated verbs it grants: create, publish, read, close, purge, metrics."`
	TTL        time.Duration `name:"ttl" default:"1h" placeholder:"TIME" help:"How long the token is good for."`
}

func (tokenCmd) Help() string {
	return `Prints a capability token (a JWT) that grants the verbs of --allow on the keys of --key and under the prefixes of --prefix until --ttl from now, signed with the key that sluice serve verifies tokens with (--auth-key or --auth-key-file, or --private-key for an issuer that keeps its private key). Clients send it as Authorization: Bearer, ?token= or the password of HTTP Basic; sluice run, push and tail take it as --token.

Exit status:
  0    the token was printed
  1    the key could not be read
  2    a bad flag: no key, no verb or an unknown one, no key or prefix

Examples:
  sluice token --auth-key-file /etc/sluice/key --prefix app/builds/ --allow publish,read --ttl 2h
  SLUICE_TOKEN=$(sluice token --key app/notes --allow read) sluice tail http://localhost:8080/streams/app/notes`
}

func (c *tokenCmd) Run(con *console) error {
	signer, err := c.signer()
	if err != nil {
		return err
	}
	tok, err := signer.Mint(jwt.Grant{Allow: c.Allow, Keys: c.Key, Prefixes: c.Prefix}, c.TTL)
	if err != nil {
		return usageError{err}
	}
	_, err = fmt.Fprintln(con.stdout, tok)
	return err
}

// signer is the Signer of the shared key, or of --private-key.
func (c *tokenCmd) signer() (*jwt.Signer, error) {
	key, err := c.key()
	switch {
	case err != nil:
		return nil, err
	case key != nil && c.PrivateKey != "":
		return nil, usageError{errors.New("--private-key and a shared key: give one")}
	case c.PrivateKey != "":
		pem, err := os.ReadFile(c.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("--private-key: %w", err)
		}
		s, err := jwt.NewPrivateSigner(pem)
		if err != nil {
			return nil, usageError{fmt.Errorf("--private-key: %w", err)}
		}
		return s, nil
	case key == nil:
		return nil, usageError{errors.New("no key: give --auth-key, --auth-key-file (or $SLUICE_AUTH_KEY) or --private-key")}
	}
	s, err := jwt.NewSigner(key)
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}
