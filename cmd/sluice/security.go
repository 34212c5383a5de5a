package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
	sluicehttp "github.com/sluicehq/sluice/http"
	"github.com/sluicehq/sluice/jwt"
)

// securityFlags are who may do what on sluice serve, and how clients reach it: the
// capability tokens' keys, busl's publish credentials, CORS, TLS, the balancer in front
// and the per-client limits.
type securityFlags struct {
	authKeyFlags       `embed:""`
	AuthPublicKey      []string      `placeholder:"FILE" predictor:"file" help:"PEM file of an issuer's public key (P-256 or Ed25519) whose ES256 or EdDSA tokens are accepted; repeatable."`
	PublicRead         bool          `help:"Let anyone read any stream, without a token (public logs)."`
	PublishCredentials string        `placeholder:"USER:PASSWORD" help:"HTTP Basic credentials that may create, publish to and close streams, as busl's CREDS (busltee sends them as the URL's user-info). Without a key, they also guard purges, and reading stays open."`
	StreamTokenTTL     time.Duration `default:"24h" placeholder:"TIME" help:"Lifetime of the publish and read tokens that POST /streams answers with a new stream's key (with --auth-key)."`
	CORSOrigins        string        `name:"cors-origins" placeholder:"ORIGINS" help:"Comma-separated origins whose pages may write (PUT, POST, DELETE) across origins, or *; pages of any origin may read."`
	TLSCert            string        `name:"tls-cert" placeholder:"FILE" predictor:"file" help:"PEM certificate chain: serve HTTPS (and HTTP/2) with --tls-key; reloaded when the files change or on SIGHUP."`
	TLSKey             string        `name:"tls-key" placeholder:"FILE" predictor:"file" help:"PEM private key of --tls-cert."`
	TrustProxy         bool          `help:"Honour X-Forwarded-Proto and X-Forwarded-For from the balancer in front (only when every request comes through it)."`
	RequireHTTPS       bool          `name:"require-https" help:"Refuse plain HTTP (busl's ENFORCE_HTTPS): GET and HEAD are redirected to https, other requests get 403; with --trust-proxy, X-Forwarded-Proto tells."`
	RateLimit          float64       `placeholder:"N" help:"Requests a second allowed to one client address (429 with Retry-After beyond); 0 for no limit."`
	RateBurst          int           `placeholder:"N" help:"Requests one client address may make at once above --rate-limit (default: the rate, at least 1)."`
	MaxClientRequests  int           `placeholder:"N" help:"Requests (followers included) one client address may have open at once (429 beyond); 0 for no limit."`
}

// validate checks what the parser cannot: flags that go together, and values in range.
func (c *securityFlags) validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.PublishCredentials != "" && !strings.Contains(c.PublishCredentials, ":"):
		return errors.New("--publish-credentials: want user:password")
	case c.RateLimit < 0 || c.RateBurst < 0 || c.MaxClientRequests < 0:
		return errors.New("--rate-limit, --rate-burst and --max-client-requests: want 0 or more")
	case c.StreamTokenTTL <= 0:
		return errors.New("--stream-token-ttl: want a positive duration")
	}
	return nil
}

// authKeyFlags are the shared key of capability tokens, which sluice serve verifies
// them with and sluice token signs them with.
type authKeyFlags struct {
	AuthKey     string `placeholder:"KEY" help:"Shared key (32 bytes or more) of capability tokens (HS256), which sluice token signs them with and sluice serve verifies them with. With a key, every request needs a token, but for what --public-read opens and the health endpoints."`
	AuthKeyFile string `placeholder:"FILE" predictor:"file" help:"File holding --auth-key (without its trailing newline)."`
}

// key returns the shared key of --auth-key or --auth-key-file, or nil for none.
func (c *authKeyFlags) key() ([]byte, error) {
	switch {
	case c.AuthKey != "" && c.AuthKeyFile != "":
		return nil, usageError{errors.New("--auth-key and --auth-key-file: give one")}
	case c.AuthKeyFile != "":
		b, err := os.ReadFile(c.AuthKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--auth-key-file: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	case c.AuthKey != "":
		return []byte(c.AuthKey), nil
	}
	return nil, nil
}

// configure sets the access control, CORS, TLS and limits of hc. The CertReloader, if
// there is one, is what SIGHUP reloads.
func (c *securityFlags) configure(hc *sluicehttp.Config) (*sluicehttp.CertReloader, error) {
	if err := c.validate(); err != nil {
		return nil, usageError{err}
	}
	if err := c.authorize(hc); err != nil {
		return nil, err
	}
	if c.CORSOrigins != "" {
		hc.CORSOrigins = strings.Split(c.CORSOrigins, ",")
	}
	hc.TrustProxy, hc.RequireHTTPS = c.TrustProxy, c.RequireHTTPS
	hc.RateLimit, hc.RateBurst, hc.MaxClientRequests = c.RateLimit, c.RateBurst, c.MaxClientRequests
	if c.TLSCert == "" {
		return nil, nil
	}
	cr, err := sluicehttp.NewCertReloader(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, err
	}
	hc.TLS = cr.Config()
	return cr, nil
}

// authorize sets hc's Authorizer from the keys and credentials, and, with a shared key,
// the tokens of a stream made with a random key. With none of them the server is open.
func (c *securityFlags) authorize(hc *sluicehttp.Config) error {
	key, err := c.key()
	if err != nil {
		return err
	}
	if key == nil && len(c.AuthPublicKey) == 0 && c.PublishCredentials == "" {
		return nil
	}
	a := &jwt.Authorizer{PublicRead: c.PublicRead}
	a.PublishUser, a.PublishPassword, _ = strings.Cut(c.PublishCredentials, ":")
	if key != nil || len(c.AuthPublicKey) > 0 {
		var pems [][]byte
		for _, f := range c.AuthPublicKey {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("--auth-public-key: %w", err)
			}
			pems = append(pems, b)
		}
		if a.Verifier, err = jwt.NewVerifier(key, pems...); err != nil {
			return usageError{err}
		}
	}
	hc.Authorizer = a
	if key != nil {
		signer, err := jwt.NewSigner(key)
		if err != nil {
			return usageError{err}
		}
		hc.StreamTokens = streamTokens(signer, c.StreamTokenTTL)
	}
	return nil
}

// streamTokens mints, for a stream made with a random key, a token that publishes to
// and closes it, and one that reads it, and nothing else.
func streamTokens(s *jwt.Signer, ttl time.Duration) func(key string) (string, string, error) {
	return func(key string) (string, string, error) {
		publish, err := s.Mint(jwt.Grant{Allow: []sluice.Op{sluice.OpPublish, sluice.OpClose}, Keys: []string{key}}, ttl)
		if err != nil {
			return "", "", err
		}
		read, err := s.Mint(jwt.Grant{Allow: []sluice.Op{sluice.OpRead}, Keys: []string{key}}, ttl)
		return publish, read, err
	}
}

// warnIfOpen warns when the server lets anyone do anything and listens beyond
// loopback, where others may reach it.
func warnIfOpen(log *slog.Logger, hc *sluicehttp.Config, addr net.Addr) {
	if hc.Authorizer != nil {
		return
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return
	}
	log.Warn("the server is open: anyone who reaches it may publish to, read and purge any stream; see --auth-key", "addr", addr.String())
}

// reloadOnHUP reloads cr's certificate on each SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, cr *sluicehttp.CertReloader, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				if err := cr.Reload(); err != nil {
					log.Error("TLS certificate not reloaded; the one in use stays", "err", err)
				} else {
					log.Info("TLS certificate reloaded")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(hup); cancel(); <-done }
}
