package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/client"
)

// tailCmd is sluice tail.
type tailCmd struct {
	Client       clientFlags   `embed:"" set:"connect_timeout=5s" set:"log_default=warn"`
	Retry        *int          `placeholder:"N" help:"Retries of a failed connection in a row before giving up on the server: 0 tries once (default no limit but --retry-max-time)."`
	RetryMaxTime time.Duration `default:"30s" placeholder:"TIME" help:"Longest time to go on retrying a server that cannot be connected to or fails, in a row (every byte received starts it again); 0 for no limit."`
	FromOffset   int64         `default:"0" placeholder:"OFFSET" help:"Start at byte OFFSET of the stream."`
	NoFollow     bool          `help:"Write what the stream holds now and exit, instead of following it."`

	URL string `arg:"" help:"The stream's URL: http(s)://host/streams/key."`
}

func (tailCmd) Help() string {
	return `Writes the stream at URL to stdout, byte for byte, and follows it live until it is closed. A dropped connection or a server restart is resumed where it left off, so every byte is written once and in order. A server that cannot be reached is retried for --retry-max-time (30s), then sluice tail exits with status 7: within --retry-max-time plus --connect-timeout (35s by default) of the first failure.

Exit status:
  0         the stream is closed and every byte was written (with --no-follow: every
            byte stored when it was read)
  1         the stream does not exist, the server refused the request or failed for
            --retry-max-time (or 1 + --retry attempts) in a row, or stdout could not be
            written
  2         bad flags or arguments
  7         the server could not be connected to (refused, unreachable, timed out, or
            its name did not resolve) for --retry-max-time (or 1 + --retry attempts)
  130, 143  interrupted by SIGINT or SIGTERM

Examples:
  sluice tail https://sluice.example.com/streams/app/builds/42
  sluice tail --from-offset 1048576 "$STREAM_URL" | grep -i error
  sluice tail --no-follow "$STREAM_URL" > build.log`
}

func (c *tailCmd) Validate() error {
	switch {
	case c.Retry != nil && *c.Retry < 0:
		return fmt.Errorf("--retry %d: want 0 or more", *c.Retry)
	case c.RetryMaxTime < 0:
		return fmt.Errorf("--retry-max-time %v: want 0 or more", c.RetryMaxTime)
	case c.FromOffset < 0:
		return fmt.Errorf("--from-offset %d: want 0 or more", c.FromOffset)
	}
	return c.Client.validate()
}

// maxAttempts is the Reader's MaxAttempts: 1 + --retry, or 0 (no limit) without it.
func (c *tailCmd) maxAttempts() int {
	if c.Retry == nil {
		return 0
	}
	return 1 + *c.Retry
}

func (c *tailCmd) Run(ctx context.Context, con *console) error {
	sc := c.Client.scrubber(c.URL)
	log, closeLog, err := c.Client.logger(con.stderr, slog.LevelWarn, sc)
	if err != nil {
		return err
	}
	defer closeLog()
	hc := c.Client.httpClient()
	defer hc.CloseIdleConnections()
	r := client.NewReader(c.URL, client.ReaderOptions{
		Client:       hc,
		Header:       c.Client.header(),
		Offset:       c.FromOffset,
		NoFollow:     c.NoFollow,
		MaxAttempts:  c.maxAttempts(),
		MaxRetryTime: c.RetryMaxTime,
		Logger:       log,
	})
	defer r.Close()
	interrupted := onInterrupt(ctx, func() { r.Close() }) // Close ends a blocked Read

	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, err := con.stdout.Write(buf[:n]); err != nil {
				if s := interrupted(); s != nil {
					return s
				}
				return fmt.Errorf("tail: writing stdout: %w", err)
			}
		}
		if err == nil {
			continue
		}
		if s := interrupted(); s != nil {
			return s
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, sluice.ErrNotFound):
			return fmt.Errorf("tail: stream %s does not exist", sc.url)
		default:
			return sc.failure(err, "tail %s: at offset %d: %v", sc.url, r.Offset(), err)
		}
	}
}

// onInterrupt calls abort once, when the first SIGINT or SIGTERM arrives or ctx is done.
// The function it returns stops watching and tells why abort was called: an error for
// exit status 128+N after signal N (130 for SIGINT), ctx's error, or nil if it was not.
func onInterrupt(ctx context.Context, abort func()) (interrupted func() error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	stop, done := make(chan struct{}), make(chan struct{})
	var sig os.Signal
	aborted := false
	go func() {
		defer close(done)
		select {
		case sig = <-sigs:
		case <-ctx.Done():
		case <-stop:
			return
		}
		aborted = true
		abort()
	}()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			close(stop)
			<-done
			signal.Stop(sigs)
			if aborted && sig == nil {
				// main's signal context saw the signal first; ours is on its way.
				select {
				case sig = <-sigs:
				case <-time.After(time.Second):
				}
			}
			switch {
			case sig != nil:
				err = &exitError{128 + int(sig.(syscall.Signal)), nil}
			case aborted:
				err = context.Cause(ctx)
			}
		})
		return err
	}
}
