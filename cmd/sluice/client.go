package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/client"
)

// logOff is a log level above every message's: no logs.
const logOff = slog.LevelError + 4

// clientFlags are the flags that sluice run, push and tail share: how to reach the
// server, and where their own logs go. They are busltee's, with the same meaning. Their
// defaults are each command's (busltee's for run): connect_timeout and log_default are
// set by its embed tag.
type clientFlags struct {
	Token          string      `placeholder:"TOKEN" help:"Capability token, sent as Authorization: Bearer (sluice token mints one)."`
	Insecure       bool        `short:"k" help:"Skip the verification of the server's TLS certificate."`
	ConnectTimeout seconds     `default:"${connect_timeout}" placeholder:"TIME" help:"Longest time to connect to the server: a duration (5s, 500ms) or, as busltee's, seconds (5, 0.5)."`
	RequestID      string      `placeholder:"ID" help:"ID sent as the Request-Id header of every request, and logged."`
	LogFile        string      `placeholder:"FILE" predictor:"file" help:"File to append sluice's own logs to, instead of stderr."`
	LogLevel       *slog.Level `placeholder:"LEVEL" help:"Log level: debug, info, warn or error (default info into --log-file, ${log_default} on stderr)."`
	LogField       []string    `placeholder:"KEY=VALUE" sep:"none" help:"Field added to every log line; repeatable."`
}

// validate checks what the parser cannot: values in range, and --log-field's form.
func (c *clientFlags) validate() error {
	if c.ConnectTimeout < 0 {
		return fmt.Errorf("--connect-timeout %v: want 0 or more", time.Duration(c.ConnectTimeout))
	}
	for _, kv := range c.LogField {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--log-field %q: want key=value", kv)
		}
	}
	return nil
}

// logger returns the logger of sluice's own messages, on stderr at stderrLevel or in
// --log-file at info, with --log-field's fields and the URL's secrets scrubbed. When the
// file cannot be opened, it logs to stderr and says why.
func (c *clientFlags) logger(stderr io.Writer, stderrLevel slog.Level, sc *scrubber) (*slog.Logger, func(), error) {
	out, closeOut, level := stderr, func() {}, stderrLevel
	var err error
	if c.LogFile != "" {
		f, e := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if e != nil {
			err = fmt.Errorf("--log-file: %w", e)
		} else {
			out, closeOut, level = f, func() { f.Close() }, slog.LevelInfo
		}
	}
	if c.LogLevel != nil {
		level = *c.LogLevel
	}
	h := slog.NewTextHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: sc.attr})
	log := slog.New(h)
	for _, kv := range c.LogField {
		k, v, _ := strings.Cut(kv, "=")
		log = log.With(k, v)
	}
	if c.RequestID != "" {
		log = log.With("request_id", c.RequestID)
	}
	return log, closeOut, err
}

// httpClient returns the client of sluice's requests: --connect-timeout and --insecure,
// TCP keepalive, a bound on the wait for response headers, and no overall timeout, which
// would cut long publishes and follows short.
func (c *clientFlags) httpClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: time.Duration(c.ConnectTimeout), KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	if c.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{Transport: tr}
}

// header returns the extra headers of every request.
func (c *clientFlags) header() http.Header {
	h := http.Header{}
	if c.RequestID != "" {
		h.Set("Request-Id", c.RequestID)
	}
	if c.Token != "" {
		h.Set("Authorization", "Bearer "+c.Token)
	}
	return h
}

// scrubber returns the scrubber of rawURL's secrets and of the token.
func (c *clientFlags) scrubber(rawURL string) *scrubber {
	sc := newScrubber(rawURL)
	if c.Token != "" {
		sc.secrets = append(sc.secrets, c.Token)
	}
	return sc
}

// writerFlags are the flags of the commands that publish (run and push). Their defaults
// are each command's, set by its embed tag.
type writerFlags struct {
	Retry         int           `default:"${retry}" placeholder:"N" help:"Retries of a failed attempt (a connection, a request) in a row before giving up on the server, as busltee's --retry: 0 tries once."`
	StreamRetry   int           `default:"${stream_retry}" placeholder:"N" help:"busltee's retries after a lost connection; Sluice counts them with --retry's, and the larger of the two applies."`
	UploadTimeout time.Duration `default:"${upload_timeout}" placeholder:"TIME" help:"Longest time to wait for the upload to finish${upload_timeout_note}."`
	SpoolDir      string        `placeholder:"DIR" predictor:"dir" help:"Directory of the spool file that holds the output until the server has it (default $$TMPDIR or /tmp)."`
}

func (c *writerFlags) validate() error {
	switch {
	case c.Retry < 0:
		return fmt.Errorf("--retry %d: want 0 or more", c.Retry)
	case c.StreamRetry < 0:
		return fmt.Errorf("--stream-retry %d: want 0 or more", c.StreamRetry)
	case c.UploadTimeout < 0:
		return fmt.Errorf("--upload-timeout %v: want 0 or more", c.UploadTimeout)
	}
	return nil
}

// options returns the Writer's options. The Writer has one budget of consecutive failed
// attempts; busltee had retries for connecting (--retry) and for reconnecting
// (--stream-retry): the larger applies, after the first attempt.
func (c *writerFlags) options(hc *http.Client, h http.Header, log *slog.Logger) client.WriterOptions {
	return client.WriterOptions{
		Client:      hc,
		Header:      h,
		SpoolDir:    c.SpoolDir,
		MaxAttempts: 1 + max(c.Retry, c.StreamRetry),
		Logger:      log,
	}
}

// seconds is a duration flag that also takes a bare number of seconds, as busltee's
// --connect-timeout did: 5 is 5s and 0.5 is 500ms, while 1m30s is a Go duration.
type seconds time.Duration

func (s *seconds) UnmarshalText(b []byte) error {
	if f, err := strconv.ParseFloat(string(b), 64); err == nil {
		*s = seconds(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q: want a duration (5s, 1m30s) or seconds (5, 0.5)", b)
	}
	*s = seconds(d)
	return nil
}

// scrubber keeps a stream URL's secrets out of logs and messages: the query string
// (tokens, signatures) and any password. url is the URL fit to show.
type scrubber struct {
	url     string
	secrets []string // replaced by "REDACTED" wherever they appear
	query   string   // "?query", removed
}

func newScrubber(rawURL string) *scrubber {
	s := &scrubber{}
	u, err := url.Parse(rawURL)
	if err != nil {
		s.url, _, _ = strings.Cut(rawURL, "?")
		s.url, _, _ = strings.Cut(s.url, "#")
		if q := strings.TrimPrefix(rawURL, s.url); q != "" {
			s.secrets = append(s.secrets, q)
		}
		return s
	}
	if u.RawQuery != "" {
		s.query = "?" + u.RawQuery
		s.secrets = append(s.secrets, u.RawQuery)
		if dq, err := url.QueryUnescape(u.RawQuery); err == nil && dq != u.RawQuery {
			s.secrets = append(s.secrets, dq)
		}
	}
	if p, ok := u.User.Password(); ok && p != "" {
		s.secrets = append(s.secrets, p)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	s.url = u.Redacted()
	return s
}

// scrub returns msg without the URL's secrets.
func (s *scrubber) scrub(msg string) string {
	if s.query != "" {
		msg = strings.ReplaceAll(msg, s.query, "")
	}
	for _, secret := range s.secrets {
		msg = strings.ReplaceAll(msg, secret, "REDACTED")
	}
	return msg
}

// failure is how sluice push and tail end after err: the message, which says what err
// is, scrubbed and on one line, wrapping err; with exit status 7 when err is a failure
// to connect to the server.
func (s *scrubber) failure(err error, format string, a ...any) error {
	e := &scrubbedError{msg: s.line(fmt.Sprintf(format, a...)), err: err}
	if couldNotConnect(err) {
		return &exitError{code: exitNoConnection, err: e}
	}
	return e
}

// exitNoConnection is the exit status of sluice push and tail when they gave up on a
// server they could not connect to, as curl's 7 ("failed to connect to host").
const exitNoConnection = 7

// couldNotConnect reports whether err is a failure to reach the server: the connection
// refused, the host unreachable, the connect timed out, or its name did not resolve.
func couldNotConnect(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial"
}

// scrubbedError is an error whose message was scrubbed of a URL's secrets; it unwraps
// to the error it tells of.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// line returns msg scrubbed, on one line.
func (s *scrubber) line(msg string) string {
	return strings.ReplaceAll(s.scrub(msg), "\n", " ")
}

// attr is a slog ReplaceAttr that scrubs strings, errors and Stringers.
func (s *scrubber) attr(_ []string, a slog.Attr) slog.Attr {
	if len(s.secrets) == 0 {
		return a
	}
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(s.scrub(a.Value.String()))
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(s.scrub(v.Error()))
		case fmt.Stringer:
			a.Value = slog.StringValue(s.scrub(v.String()))
		}
	}
	return a
}
