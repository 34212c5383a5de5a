package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/client"
)

// logOff is a log level above every message's: no logs.
const logOff = slog.LevelError + 4

// clientConfig holds the flags that sluice run, push and tail share: how to reach the
// server, and where their logs go. They are busltee's, with the same meaning.
type clientConfig struct {
	insecure       bool
	retry          int
	connectTimeout float64
	requestID      string
	logFile        string
	logLevel       string
	logFields      logFields
}

func (c *clientConfig) register(fs *flag.FlagSet, retry int, stderrLevel slog.Level) {
	fs.BoolVar(&c.insecure, "insecure", false, "skip the verification of the server's TLS certificate")
	fs.BoolVar(&c.insecure, "k", false, "insecure")
	fs.IntVar(&c.retry, "retry", retry, "failed `attempts` in a row (connections, requests) before giving up on the server; 0 for no limit")
	fs.Float64Var(&c.connectTimeout, "connect-timeout", 5, "longest `seconds` to connect to the server (fractions allowed)")
	fs.StringVar(&c.requestID, "request-id", "", "`id` sent as the Request-Id header of every request, and logged")
	fs.StringVar(&c.logFile, "log-file", "", "`file` to append sluice's own logs to, instead of stderr")
	onStderr := strings.ToLower(stderrLevel.String()) + " on stderr"
	if stderrLevel == logOff {
		onStderr = "none on stderr, where a failure is reported in one line at the end"
	}
	fs.StringVar(&c.logLevel, "log-level", "", "log `level`: debug, info, warn or error (default info into --log-file, "+onStderr+")")
	fs.Var(&c.logFields, "log-field", "`key=value` added to every log line; repeatable")
}

func (c *clientConfig) check() error {
	if c.retry < 0 {
		return usageError{fmt.Errorf("--retry %d: want 0 or more", c.retry)}
	}
	if c.connectTimeout < 0 {
		return usageError{fmt.Errorf("--connect-timeout %v: want 0 or more seconds", c.connectTimeout)}
	}
	var l slog.Level
	if c.logLevel != "" && l.UnmarshalText([]byte(c.logLevel)) != nil {
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)}
	}
	return nil
}

// logger returns the logger of sluice's own messages, on stderr at stderrLevel or in
// --log-file at info, with --log-field's fields and the URL's secrets scrubbed. When the
// file cannot be opened, it logs to stderr and says why.
func (c *clientConfig) logger(stderr io.Writer, stderrLevel slog.Level, sc *scrubber) (*slog.Logger, func(), error) {
	out, closeOut, level := stderr, func() {}, stderrLevel
	var err error
	if c.logFile != "" {
		f, e := os.OpenFile(c.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if e != nil {
			err = fmt.Errorf("--log-file: %w", e)
		} else {
			out, closeOut, level = f, func() { f.Close() }, slog.LevelInfo
		}
	}
	if c.logLevel != "" {
		level.UnmarshalText([]byte(c.logLevel)) // checked by check
	}
	h := slog.NewTextHandler(out, &slog.HandlerOptions{Level: level, ReplaceAttr: sc.attr})
	log := slog.New(h)
	for _, kv := range c.logFields {
		log = log.With(kv[0], kv[1])
	}
	if c.requestID != "" {
		log = log.With("request_id", c.requestID)
	}
	return log, closeOut, err
}

// httpClient returns the client of sluice's requests: --connect-timeout and --insecure,
// TCP keepalive, a bound on the wait for response headers, and no overall timeout, which
// would cut long publishes and follows short.
func (c *clientConfig) httpClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: time.Duration(c.connectTimeout * float64(time.Second)), KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	if c.insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{Transport: tr}
}

// header returns the extra headers of every request.
func (c *clientConfig) header() http.Header {
	h := http.Header{}
	if c.requestID != "" {
		h.Set("Request-Id", c.requestID)
	}
	return h
}

// writerConfig holds the flags of the commands that publish (run and push).
type writerConfig struct {
	streamRetry   int
	uploadTimeout time.Duration
	spoolDir      string
}

func (c *writerConfig) register(fs *flag.FlagSet, uploadTimeout time.Duration, timeoutNote string) {
	fs.IntVar(&c.streamRetry, "stream-retry", 0, "busltee's budget of `reconnections` after a lost connection; Sluice counts them with --retry's attempts, and the larger of the two applies")
	fs.DurationVar(&c.uploadTimeout, "upload-timeout", uploadTimeout, "longest `time` to wait for the upload to finish"+timeoutNote)
	fs.StringVar(&c.spoolDir, "spool-dir", "", "`directory` of the spool file that holds the output until the server has it (default $TMPDIR or /tmp)")
}

func (c *writerConfig) check() error {
	if c.streamRetry < 0 {
		return usageError{fmt.Errorf("--stream-retry %d: want 0 or more", c.streamRetry)}
	}
	if c.uploadTimeout < 0 {
		return usageError{fmt.Errorf("--upload-timeout %v: want 0 or more", c.uploadTimeout)}
	}
	return nil
}

// options returns the Writer's options. The Writer has one budget of consecutive failed
// attempts, maxAttempts; busltee had one for connecting (--retry) and one for
// reconnecting (--stream-retry): callers pass the larger.
func (c *writerConfig) options(maxAttempts int, hc *http.Client, h http.Header, log *slog.Logger, progress func(written, acked int64)) client.WriterOptions {
	return client.WriterOptions{
		Client:      hc,
		Header:      h,
		SpoolDir:    c.spoolDir,
		MaxAttempts: maxAttempts,
		Logger:      log,
		OnProgress:  progress,
	}
}

// logFields is --log-field: repeatable key=value pairs.
type logFields [][2]string

func (f *logFields) String() string {
	var s []string
	for _, kv := range *f {
		s = append(s, kv[0]+"="+kv[1])
	}
	return strings.Join(s, ",")
}

func (f *logFields) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value")
	}
	*f = append(*f, [2]string{k, val})
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
