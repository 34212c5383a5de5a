package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/sluicehq/sluice/client"
)

// pushCmd is sluice push.
type pushCmd struct {
	Client     clientFlags `embed:"" set:"connect_timeout=5s" set:"log_default=none"`
	Writer     writerFlags `embed:"" set:"retry=10" set:"stream_retry=0" set:"upload_timeout=0s" set:"upload_timeout_note=; 0 for no limit"`
	NoProgress bool        `help:"No progress line, even on a terminal."`

	URL  string `arg:"" help:"The stream's URL: http(s)://host/streams/key."`
	File string `arg:"" optional:"" predictor:"file" help:"The file to publish; stdin when it is - or left out."`
}

func (pushCmd) Help() string {
	return `Publishes FILE, or stdin when FILE is - or missing, to the stream at URL, then closes the stream and waits until the server has confirmed every byte. Input is spooled to a local file first and sent in the background: a dropped connection or a server restart is resumed where the server's copy ends, without losing or repeating a byte. Stdin is published as it arrives, so followers see a live stream (some-job | sluice push URL).

On a terminal, a progress line shows the bytes the server has confirmed, the rate, and for a file a bar and the time left, leaving out what does not fit in the terminal's width; otherwise (and with --no-progress) sluice push prints nothing unless it fails.

Exit status:
  0         the stream is closed with every byte, confirmed by the server
  1         not delivered: the server failed 1 + --retry attempts in a row, refused the
            stream (for one, closed with other bytes), or --upload-timeout passed; or
            the input could not be read
  2         bad flags or arguments
  7         not delivered: the server could not be connected to (refused, unreachable,
            timed out, or its name did not resolve) in 1 + --retry attempts in a row
  130, 143  interrupted by SIGINT or SIGTERM (the stream is left open)

Examples:
  sluice push https://sluice.example.com/streams/app/releases/v1.2/notes release-notes.md
  make 2>&1 | sluice push "$STREAM_URL"
  sluice push --retry 0 --upload-timeout 10m "$STREAM_URL" big.log`
}

func (c *pushCmd) Validate() error {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bad URL %q: want http(s)://host/streams/key", newScrubber(c.URL).url)
	}
	if err := c.Client.validate(); err != nil {
		return err
	}
	return c.Writer.validate()
}

func (c *pushCmd) Run(ctx context.Context, con *console) error {
	sc := c.Client.scrubber(c.URL)
	in, size, closeIn, err := openInput(c.File)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer closeIn()
	log, closeLog, err := c.Client.logger(con.stderr, logOff, sc)
	if err != nil {
		return err
	}
	defer closeLog()
	hc := c.Client.httpClient()
	defer hc.CloseIdleConnections()
	w, err := client.NewWriter(c.URL, c.Writer.options(hc, c.Client.header(), log))
	if err != nil {
		return sc.failure(err, "push: %v", err)
	}

	// SIGINT or SIGTERM end the push at once.
	abortCtx, abort := context.WithCancel(context.Background())
	defer abort()
	interrupted := onInterrupt(ctx, abort)
	var line *progress
	if f, ok := con.stderr.(*os.File); ok && !c.NoProgress && isTerminal(f) {
		line = startProgress(f, w, size)
	}
	var read atomic.Int64
	copied := copyInput(in, inputName(c.File), w, &read, line)
	var readErr error
	select {
	case readErr = <-copied:
	case <-abortCtx.Done():
	}
	closeCtx := abortCtx
	if readErr != nil {
		abort() // a partial input must not close the stream
	} else if c.Writer.UploadTimeout > 0 {
		var stop context.CancelFunc
		closeCtx, stop = context.WithTimeoutCause(abortCtx, c.Writer.UploadTimeout, fmt.Errorf("--upload-timeout (%v) passed", c.Writer.UploadTimeout))
		defer stop()
	}
	err = w.CloseContext(closeCtx)
	line.stop(err == nil)
	if ierr := interrupted(); ierr != nil {
		var e *exitError
		if errors.As(ierr, &e) {
			e.err = fmt.Errorf("push: interrupted: %d of %d bytes delivered to %s; the stream is left open", w.Acked(), read.Load(), sc.url)
		}
		return ierr
	}
	if readErr != nil {
		return readErr
	}
	if err != nil {
		return sc.failure(err, "push to %s failed: %v", sc.url, err)
	}
	log.Info("pushed", "bytes", w.Acked())
	return nil
}

// openInput opens the file to push, or stdin for "-" or "", and returns its size when
// it is a regular file (else -1).
func openInput(name string) (in io.Reader, size int64, closeIn func(), err error) {
	if name == "" || name == "-" {
		return os.Stdin, -1, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, err
	}
	size = -1
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, func() { f.Close() }, nil
}

// copyInput copies in to w in a goroutine of its own, since a read of stdin cannot be
// interrupted, counting the bytes read. The channel gets nil at the end of the input
// or when w gives up (its Close says why), or the read error.
func copyInput(in io.Reader, name string, w *client.Writer, read *atomic.Int64, line *progress) <-chan error {
	copied := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil {
					copied <- nil
					return
				}
				line.setRead(read.Add(int64(n)))
			}
			if err == io.EOF {
				copied <- nil
				return
			}
			if err != nil {
				copied <- fmt.Errorf("push: reading %s: %w", name, err)
				return
			}
		}
	}()
	return copied
}

func inputName(name string) string {
	if name == "" || name == "-" {
		return "stdin"
	}
	return name
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termWidth is the width of the terminal f, in columns: 80 when it does not say.
func termWidth(f *os.File) int {
	if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
		return w
	}
	return 80
}

// progress draws sluice push's progress line on a terminal, a few times a second, as
// wide as the terminal is at each draw.
type progress struct {
	out   *os.File
	w     *client.Writer
	size  int64 // -1 when unknown (stdin)
	start time.Time
	read  atomic.Int64

	quit chan struct{}
	done chan struct{}
	once sync.Once

	samples []sample // recent (time, acked), for the rate
}

type sample struct {
	t     time.Time
	acked int64
}

func startProgress(out *os.File, w *client.Writer, size int64) *progress {
	p := &progress{out: out, w: w, size: size, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(time.Now())
			case <-p.quit:
				return
			}
		}
	}()
	return p
}

func (p *progress) setRead(n int64) {
	if p != nil {
		p.read.Store(n)
	}
}

// stop draws the last line, kept on the terminal when the push succeeded.
func (p *progress) stop(ok bool) {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.quit)
		<-p.done
		if ok {
			p.draw(time.Now())
			fmt.Fprintln(p.out)
		} else {
			fmt.Fprint(p.out, "\r\x1b[K")
		}
	})
}

func (p *progress) draw(now time.Time) {
	acked := p.w.Acked()
	p.samples = append(p.samples, sample{now, acked})
	for len(p.samples) > 2 && now.Sub(p.samples[0].t) > 5*time.Second {
		p.samples = p.samples[1:]
	}
	var rate float64
	if first := p.samples[0]; now.Sub(first.t) > 0 && len(p.samples) > 1 {
		rate = float64(acked-first.acked) / now.Sub(first.t).Seconds()
	}
	fmt.Fprint(p.out, "\r"+progressLine(acked, p.read.Load(), p.size, rate, termWidth(p.out))+"\x1b[K")
}

// progressLine renders the progress of a push: the bytes the server has confirmed, of
// size when it is known (with a bar and the time left), at rate bytes per second. It
// keeps within width-1 columns, since a line that fills the terminal, or more, wraps
// and each redraw would then start a line lower: what does not fit is left out, the bar
// first, then the time left, the rate, the sizes.
func progressLine(acked, read, size int64, rate float64, width int) string {
	room := width - 1
	speed := fmt.Sprintf("  %s/s", byteSize(int64(rate)))
	if size < 0 {
		return fit(room, byteSize(acked)+" sent", fmt.Sprintf("%s sent, %s read", byteSize(acked), byteSize(read)), speed)
	}
	frac := 1.0
	if size > 0 {
		frac = min(1, float64(acked)/float64(size))
	}
	percent := fmt.Sprintf("%3d%%", int(frac*100))
	parts := []string{percent + fmt.Sprintf("  %s / %s", byteSize(acked), byteSize(size)), speed}
	if acked < size {
		eta := "  ETA -"
		if rate > 0 {
			eta = fmt.Sprintf("  ETA %s", time.Duration(float64(size-acked)/rate*float64(time.Second)).Round(time.Second))
		}
		parts = append(parts, eta)
	}
	text := fit(room, strings.TrimLeft(percent, " "), parts...)
	if n := min(24, room-len(text)-3); n >= 8 { // "[" bar "] " and the text
		return bar(frac, n) + " " + text
	}
	return strings.TrimLeft(text, " ")
}

// fit joins as many of parts, from the first, as fit in room columns; when not even the
// first does, it is short (cut to room if it must be).
func fit(room int, short string, parts ...string) string {
	line := ""
	for _, p := range parts {
		if len(line)+len(p) > room {
			break
		}
		line += p
	}
	if line == "" {
		line = short[:max(0, min(len(short), room))]
	}
	return line
}

// bar draws frac as a bar of n columns between brackets: [=====>    ].
func bar(frac float64, n int) string {
	done := int(frac * float64(n))
	b := "[" + strings.Repeat("=", done)
	if done < n {
		b += ">" + strings.Repeat(" ", n-done-1)
	}
	return b + "]"
}

// byteSize formats n bytes in binary units: 512 B, 1.5 KiB, 12.0 MiB.
func byteSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}
