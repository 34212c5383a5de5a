// Package client publishes and follows Sluice streams over HTTP. A Writer is an
// io.WriteCloser that publishes through a local spool file, so that writes never wait for
// the network; a Reader is an io.ReadCloser that follows a stream, resuming by offset. Both
// survive dropped connections and server restarts without losing or repeating a byte.
//
// It depends on the standard library and the root package sluice (for the errors callers
// branch on) only, so that a program that publishes or follows does not link the server
// (package http) and what the server needs: Prometheus, WebSocket, the embedded viewer.
package client

// This file holds what the client side (Writer and Reader) shares: its HTTP client, its
// errors and the redaction of URLs in logs and errors.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// newClient returns the client a Writer or Reader uses when given none: a 5s connect
// timeout, TCP keepalive to notice vanished peers, a bound on the wait for response
// headers, and no overall timeout, which would cut long publishes and follows short.
// Each Writer and Reader gets its own, so that closing it leaves no idle connection (and
// no goroutine) behind.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}}
}

// checkURL accepts absolute http and https URLs.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("sluice: bad URL %q: %w", redact(raw), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("sluice: bad URL %q: want http://host/streams/key", redact(raw))
	}
	return nil
}

// redact returns rawURL fit for a log line or an error message: without its query string
// and fragment, which may hold secrets (tokens, signatures), and with any password masked.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		s, _, _ := strings.Cut(rawURL, "?")
		s, _, _ = strings.Cut(s, "#")
		return s
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.Redacted()
}

// redactErr redacts the URL that net/http puts in the errors of a request.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redact(ue.URL), Err: ue.Err}
	}
	return err
}

// statusError is an HTTP error response. It unwraps to the sluice error its status and
// headers stand for, so that callers can branch with errors.Is (sluice.ErrNotFound, ...).
// The reason is only shown: its text is for people, and may change.
type statusError struct {
	method, url string // url redacted
	code        int
	reason      string        // the first line of the body
	conflict    string        // the Stream-Conflict header of a 409
	retryAfter  time.Duration // the Retry-After of a 429 or 503, if any
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.url, e.code, http.StatusText(e.code), e.reason)
}

func (e *statusError) Unwrap() error {
	switch e.code {
	case http.StatusNotFound:
		return sluice.ErrNotFound
	case http.StatusRequestEntityTooLarge:
		return sluice.ErrTooLarge
	case http.StatusConflict:
		return conflictErrors[e.conflict]
	}
	return nil
}

// conflictErrors are the causes of a 409 that its Stream-Conflict header names. A 409
// without it (a server older than the header) stands for none of them.
var conflictErrors = map[string]error{"gap": sluice.ErrGap, "mismatch": sluice.ErrMismatch, "closed": sluice.ErrClosed}

// permanent reports whether a request failed in a way that the same request would fail
// again: a conflict, or a 4xx except 408 Request Timeout and 429 Too Many Requests.
// Connection errors, timeouts and 5xx (including 503 while a server drains) are worth
// retrying.
func permanent(err error) bool {
	var c *conflict
	if errors.As(err, &c) {
		return true
	}
	var se *statusError
	return errors.As(err, &se) && se.code >= 400 && se.code < 500 &&
		se.code != http.StatusRequestTimeout && se.code != http.StatusTooManyRequests
}

// conflict is a state of the stream, or an answer of the server, that no retry can mend.
type conflict struct {
	msg string
	err error // what it unwraps to, if anything
}

func (c *conflict) Error() string { return c.msg }
func (c *conflict) Unwrap() error { return c.err }

// responseError turns a response with an error status into a statusError, reading the
// first line of its body as the reason. It closes the body.
func responseError(resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if reason == "" {
		reason = "(no reason given)"
	}
	return &statusError{method: resp.Request.Method, url: redact(resp.Request.URL.String()), code: resp.StatusCode,
		reason: reason, conflict: resp.Header.Get("Stream-Conflict"), retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
}

// maxRetryAfter bounds how long a server's Retry-After holds a client back.
const maxRetryAfter = 5 * time.Minute

// parseRetryAfter reads Retry-After: seconds, or an HTTP date; 0 for none.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(0, time.Until(t)), maxRetryAfter)
	}
	return 0
}

// retryDelay is how long to wait before the next attempt after err: the backoff d, or
// longer if the server said so (Retry-After, with 429 and 503).
func retryDelay(err error, d time.Duration) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return max(d, se.retryAfter)
	}
	return d
}

// streamInfo reads the Stream-Length and Stream-Closed headers of a response.
func streamInfo(h http.Header) (length int64, closed bool, err error) {
	length, err = strconv.ParseInt(h.Get("Stream-Length"), 10, 64)
	if err != nil || length < 0 {
		return 0, false, fmt.Errorf("bad or missing Stream-Length %q", h.Get("Stream-Length"))
	}
	return length, h.Get("Stream-Closed") == "true", nil
}

// setHeaders adds extra headers to a request.
func setHeaders(req *http.Request, extra http.Header) {
	for k, vs := range extra {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
}

// discardLogger is the default logger of a Writer or Reader: a library should not write
// to a program's logs unless asked to.
var discardLogger = slog.New(slog.DiscardHandler)
