package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/client"
)

const runUsage = `Usage: sluice run [flags] URL -- command [args...]

Runs command and publishes its output to the stream at URL. Its stdout and stderr are
shown unchanged, and both go into the stream, merged in the order they arrive. The output
is spooled to a local file first, so the command never waits for the network: when the
server is slow, restarts or cannot be reached, the command runs as usual and the upload
resumes where the server's copy ends. When the command has ended, sluice waits up to
--upload-timeout for the upload to finish; an incomplete upload is reported with a
one-line warning on stderr and does not change the exit status.

Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded, every one, to
the command's process group. When the command ends, what is left of its process group
(background children) gets SIGTERM, then SIGKILL after --kill-grace.

sluice run replaces busl's busltee: busltee's flags are accepted with the same meaning,
and may also come after URL. URLs are logged without their query strings.

Exit status:
  the command's   it exited with a status (0-255); 128+N if it was killed by signal N
  126             the command was found but could not be run (permission denied)
  127             the command was not found
  2               bad flags or arguments; nothing was run

Examples:
  sluice run https://sluice.example.com/streams/app/builds/42 -- make test
  sluice run --upload-timeout 1m --request-id "$REQUEST_ID" "$STREAM_URL" -- ./ci.sh
  sluice run "$BUSL_URL" -k --retry 5 --connect-timeout 1 -- bash -c 'npm ci && npm test'
  SLUICE_LOG_FILE=/var/log/sluice.log sluice run "$STREAM_URL" -- ./deploy.sh

Flags:
`

// runConfig is what sluice run is told by flags and environment.
type runConfig struct {
	clientConfig
	writerConfig
	killGrace time.Duration
}

func runFlags(stderr io.Writer) (*flag.FlagSet, *runConfig) {
	c := &runConfig{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, runUsage); printDefaults(stderr, fs) }
	c.clientConfig.register(fs, 0, logOff) // the terminal is the command's
	c.writerConfig.register(fs, 30*time.Second, "; 0 waits as long as it takes")
	fs.DurationVar(&c.killGrace, "kill-grace", 2*time.Second, "`time` between SIGTERM and SIGKILL to what is left of the command's process group once it has ended")
	return fs, c
}

// parseRunArgs parses sluice run's command line: flags, URL, then the command, after
// "--" or at the first argument that is not a flag. Like busltee, flags may also follow
// URL.
func parseRunArgs(fs *flag.FlagSet, args []string) (rawURL string, command []string, err error) {
	if err := parseFlagsArgs(fs, args); err != nil {
		return "", nil, err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return "", nil, usageError{errors.New("run: no URL given (sluice run URL -- command)")}
	}
	rawURL, rest = rest[0], rest[1:]
	switch {
	case len(rest) > 0 && rest[0] == "--":
		rest = rest[1:]
	case len(rest) > 0 && strings.HasPrefix(rest[0], "-"):
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", nil, err
			}
			return "", nil, usageError{err}
		}
		rest = fs.Args()
	}
	if len(rest) == 0 {
		return "", nil, usageError{errors.New("run: no command given (sluice run URL -- command)")}
	}
	return rawURL, rest, nil
}

// exitError ends sluice with an exit status of its own choosing: sluice run's command's,
// or 128+N after signal N. With a nil err, main prints nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// runCommand is sluice run. It deliberately ignores ctx, which main cancels on the first
// SIGINT or SIGTERM: sluice run forwards those to the command, which decides when it ends.
func runCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := runFlags(stderr)
	rawURL, command, err := parseRunArgs(fs, args)
	if err != nil {
		return err
	}
	if err := c.clientConfig.check(); err != nil {
		return err
	}
	if err := c.writerConfig.check(); err != nil {
		return err
	}
	if c.killGrace < 0 {
		return usageError{fmt.Errorf("--kill-grace %v: want 0 or more", c.killGrace)}
	}
	sc := newScrubber(rawURL)
	warn := func(format string, a ...any) {
		fmt.Fprintln(stderr, sc.line("sluice: warning: "+fmt.Sprintf(format, a...)))
	}
	log, closeLog, err := c.logger(stderr, logOff, sc)
	if err != nil {
		warn("%v", err) // and the command runs all the same
	}
	defer closeLog()

	// Signals are caught before the command starts, so that none is lost in between.
	sigs := make(chan os.Signal, 16)
	for _, s := range forwardedSignals {
		if ignoredAtStart[s] {
			// As under nohup: the command inherits the ignored signal, as it would without sluice.
			signal.Ignore(s)
			continue
		}
		signal.Notify(sigs, s)
	}
	defer signal.Stop(sigs)
	// A terminal that goes away (a closed pipe on stdout) must not kill sluice, which
	// keeps publishing the command's output: writes to it fail with EPIPE instead.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)

	hc := c.httpClient()
	defer hc.CloseIdleConnections()
	w, err := client.NewWriter(rawURL, c.options(max(c.retry, c.streamRetry), hc, c.header(), log, nil))
	if err != nil {
		warn("not uploading to %s: %v", sc.url, err)
		w = nil
	}
	m := &merger{w: w, log: log}

	p, err := startGroup(command)
	if err != nil {
		// The stream says why it is empty, as the terminal does.
		code, msg := 126, err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			msg = fmt.Sprintf("%s: %v", command[0], pe.Err)
		}
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code, msg = 127, fmt.Sprintf("%s: command not found", command[0])
		}
		msg = "run: " + msg
		if w != nil {
			m.write([]byte("sluice: " + msg + "\n"))
			if err := m.finish(c.uploadTimeout, sigs); err != nil {
				warn("upload to %s incomplete: %v", sc.url, err)
			}
		}
		return &exitError{code, errors.New(msg)}
	}
	log.Info("command started", "command", command[0], "pid", p.pid(), "url", sc.url)

	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); m.pump(p.stdout, stdout, "stdout") }()
	go func() { defer pumps.Done(); m.pump(p.stderr, stderr, "stderr") }()

	exited := make(chan struct{})
	var status int
	go func() {
		status = p.wait()
		close(exited)
	}()
forward:
	for {
		select {
		case s := <-sigs:
			log.Info("forwarding signal", "signal", s.String())
			if err := p.signal(s); err != nil {
				log.Info("forwarding signal", "signal", s.String(), "err", err)
			}
		case <-exited:
			break forward
		}
	}
	log.Info("command exited", "status", status)

	// What is left of the process group still holds the pipes: end it, then read what
	// it wrote. A process that left the group and kept them is not waited for long.
	p.killGroup(c.killGrace, log)
	pumpsDone := make(chan struct{})
	go func() { pumps.Wait(); close(pumpsDone) }()
	select {
	case <-pumpsDone:
	case <-time.After(time.Second):
		log.Warn("the command's output is still open after its process group ended; not reading it further")
		p.stopReading()
		<-pumpsDone
	}
	p.close()

	if w != nil {
		if err := m.finish(c.uploadTimeout, sigs); err != nil {
			warn("upload to %s incomplete: %v", sc.url, err)
		} else {
			log.Info("upload complete", "bytes", w.Acked())
		}
	}
	if status != 0 {
		return &exitError{code: status}
	}
	return nil
}

// merger sends the command's stdout and stderr, merged in the order they are read, to
// the stream, and each to its own terminal.
type merger struct {
	w   *client.Writer // nil: not uploading
	log *slog.Logger

	mu      sync.Mutex
	written int64
	err     error // why w is no longer written to
}

// pump copies r to term and to the stream until r ends. A terminal that fails (a closed
// pipe) is no longer written to, and the output still goes to the stream.
func (m *merger) pump(r io.Reader, term io.Writer, name string) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m.write(buf[:n])
			if term != nil {
				if _, err := term.Write(buf[:n]); err != nil {
					m.log.Warn("cannot write the command's output to the terminal; still uploading it", "output", name, "err", err)
					term = nil
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (m *merger) write(p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w == nil || m.err != nil {
		return
	}
	n, err := m.w.Write(p)
	m.written += int64(n)
	if err != nil {
		m.err = err
		m.log.Error("upload stopped; the rest of the output is not uploaded", "err", err)
	}
}

// finish closes the stream, waiting for its delivery at most timeout (0: no limit) or
// until a signal arrives.
func (m *merger) finish(timeout time.Duration, sigs <-chan os.Signal) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if timeout > 0 {
		var c context.CancelFunc
		ctx, c = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("--upload-timeout (%v) passed", timeout))
		defer c()
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("interrupted by %v", s))
		case <-stop:
		}
	}()
	err := m.w.CloseContext(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil && m.err != nil {
		err = m.err
	}
	return err
}
