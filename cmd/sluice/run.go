package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/client"
)

// runCmd is sluice run: busltee's successor.
type runCmd struct {
	Client      clientFlags   `embed:"" set:"connect_timeout=1s" set:"log_default=none"`
	Writer      writerFlags   `embed:"" set:"retry=5" set:"stream_retry=60" set:"upload_timeout=30s" set:"upload_timeout_note=; 0 waits as long as it takes"`
	KillGrace   time.Duration `default:"2s" placeholder:"TIME" help:"Time between SIGTERM and SIGKILL to what is left of the command's process group once it has ended."`
	MergeOutput bool          `help:"Give the command one pipe for its stdout and its stderr, as CI runners do, so that the stream holds them in the exact order they were written; both then show on sluice's stdout."`

	URL     string   `arg:"" help:"The stream's URL: http(s)://host/streams/key."`
	Command []string `arg:"" passthrough:"partial" help:"The command and its arguments, after -- (which may be left out)."`
}

func (runCmd) Help() string {
	return `Runs command and publishes its output to the stream at URL. Its stdout and stderr are shown unchanged, and both go into the stream, merged in the order they are read: writes to the two that come close together may be read, and stored, in the other order. With --merge-output the command writes both to one pipe, so the stream (and sluice's stdout, where both then show) has them exactly as written. The output is spooled to a local file first, so the command never waits for the network: when the server is slow, restarts or cannot be reached, the command runs as usual and the upload resumes where the server's copy ends. When the command has ended, sluice waits up to --upload-timeout for the upload to finish; an incomplete upload is reported with a one-line warning on stderr and does not change the exit status.

Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded, every one, to the command's process group. When the command ends, what is left of its process group (background children) gets SIGTERM, then SIGKILL after --kill-grace.

sluice run replaces busl's busltee: busltee's flags are accepted with the same meaning and defaults (--retry 5, --stream-retry 60, --connect-timeout 1), as --flag value or --flag=value, and may also come after URL. So the upload gives up once 61 attempts in a row have failed (about five minutes of a server that cannot be reached); the command runs on all the same. URLs are logged without their query strings.

Exit status:
  the command's   it exited with a status (0-255); 128+N if it was killed by signal N
  126             the command was found but could not be run (permission denied)
  127             the command was not found
  2               bad flags or arguments; nothing was run

Examples:
  sluice run https://sluice.example.com/streams/app/builds/42 -- make test
  sluice run --upload-timeout 1m --request-id "$REQUEST_ID" "$STREAM_URL" -- ./ci.sh
  sluice run "$BUSL_URL" -k --retry 5 --connect-timeout 1 -- bash -c 'npm ci && npm test'
  SLUICE_LOG_FILE=/var/log/sluice.log sluice run "$STREAM_URL" -- ./deploy.sh`
}

func (c *runCmd) Validate() error {
	if len(c.Command) > 0 && c.Command[0] == "--" { // "--" after URL is handed over with the command
		c.Command = c.Command[1:]
	}
	switch {
	case c.URL == "":
		return errors.New("no URL given (sluice run URL -- command)")
	case len(c.Command) == 0:
		return errors.New("no command given (sluice run URL -- command)")
	case c.KillGrace < 0:
		return fmt.Errorf("--kill-grace %v: want 0 or more", c.KillGrace)
	}
	if err := c.Client.validate(); err != nil {
		return err
	}
	return c.Writer.validate()
}

// Run runs the command. It deliberately takes no context: main cancels its context on
// the first SIGINT or SIGTERM, and sluice run forwards those to the command, which
// decides when it ends.
func (c *runCmd) Run(con *console) error {
	sc := c.Client.scrubber(c.URL)
	warn := func(format string, a ...any) {
		fmt.Fprintln(con.stderr, sc.line("sluice: warning: "+fmt.Sprintf(format, a...)))
	}
	log, closeLog, err := c.Client.logger(con.stderr, logOff, sc)
	if err != nil {
		warn("%v", err) // and the command runs all the same
	}
	defer closeLog()
	sigs, stopSignals := catchSignals()
	defer stopSignals()
	hc := c.Client.httpClient()
	defer hc.CloseIdleConnections()
	w, err := client.NewWriter(c.URL, c.Writer.options(hc, c.Client.header(), log))
	if err != nil {
		warn("not uploading to %s: %v", sc.url, err)
		w = nil
	}
	m := &merger{w: w, log: log}
	finish := func() {
		if w == nil {
			return
		}
		if err := m.finish(c.Writer.UploadTimeout, sigs); err != nil {
			warn("upload to %s incomplete: %v", sc.url, err)
		} else {
			log.Info("upload complete", "bytes", w.Acked())
		}
	}

	p, err := startGroup(c.Command, c.MergeOutput)
	if err != nil {
		err = notStarted(c.Command[0], err)
		m.write([]byte("sluice: " + err.Error() + "\n")) // the stream says why it is empty, as the terminal does
		finish()
		return err
	}
	log.Info("command started", "command", c.Command[0], "pid", p.pid(), "url", sc.url)
	status := m.supervise(p, con, sigs, c.KillGrace)
	finish()
	if status != 0 {
		return &exitError{code: status}
	}
	return nil
}

// catchSignals catches the signals that sluice run forwards, before the command starts
// so that none is lost in between, and SIGPIPE: a terminal that goes away (a closed pipe
// on stdout) must not kill sluice, which keeps publishing the command's output, and
// writes to it fail with EPIPE instead.
func catchSignals() (sigs chan os.Signal, stop func()) {
	sigs = make(chan os.Signal, 16)
	for _, s := range forwardedSignals {
		if ignoredAtStart[s] {
			// As under nohup: the command inherits the ignored signal, as it would without sluice.
			signal.Ignore(s)
			continue
		}
		signal.Notify(sigs, s)
	}
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	return sigs, func() { signal.Stop(sigs); signal.Stop(sigpipe) }
}

// notStarted is the error of a command that could not be started, with the shell's exit
// statuses: 127 when it is not found, 126 when it cannot be run.
func notStarted(name string, err error) error {
	code, msg := 126, err.Error()
	var pe *os.PathError
	if errors.As(err, &pe) {
		msg = fmt.Sprintf("%s: %v", name, pe.Err)
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		code, msg = 127, fmt.Sprintf("%s: command not found", name)
	}
	return &exitError{code, errors.New("run: " + msg)}
}

// supervise copies the command's output to the terminal and the stream, forwards the
// signals that arrive to its process group until it exits, then ends what is left of
// the group and reads the rest of the output. It returns the command's exit status.
func (m *merger) supervise(p *group, con *console, sigs <-chan os.Signal, killGrace time.Duration) int {
	var pumps sync.WaitGroup
	pumps.Go(func() { m.pump(p.stdout, con.stdout, "stdout") })
	if p.stderr != nil {
		pumps.Go(func() { m.pump(p.stderr, con.stderr, "stderr") })
	}

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
			m.log.Info("forwarding signal", "signal", s.String())
			if err := p.signal(s); err != nil {
				m.log.Info("forwarding signal", "signal", s.String(), "err", err)
			}
		case <-exited:
			break forward
		}
	}
	m.log.Info("command exited", "status", status)

	// What is left of the process group still holds the pipes: end it, then read what
	// it wrote. A process that left the group and kept them is not waited for long.
	p.killGroup(killGrace, m.log)
	pumpsDone := make(chan struct{})
	go func() { pumps.Wait(); close(pumpsDone) }()
	select {
	case <-pumpsDone:
	case <-time.After(time.Second):
		m.log.Warn("the command's output is still open after its process group ended; not reading it further")
		p.stopReading()
		<-pumpsDone
	}
	p.close()
	return status
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
