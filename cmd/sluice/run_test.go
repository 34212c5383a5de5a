package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// result is how a sluice child process ended.
type result struct {
	code           int
	stdout, stderr []byte
}

// sluiceCmd returns the sluice binary with args, in dir, with the test's environment
// minus SLUICE_* variables.
func sluiceCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Env = childEnv()
	cmd.Dir = dir
	return cmd
}

// runSluice runs the sluice binary to its end (failing the test after d) and returns
// its exit status and output.
func runSluice(t *testing.T, d time.Duration, stdin io.Reader, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := sluiceCmd(ctx, dir, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("sluice %v still running after %v; stderr:\n%s", args, d, stderr.Bytes())
	}
	return result{exitStatus(t, err), stdout.Bytes(), stderr.Bytes()}
}

// exitStatus returns the exit status in cmd.Wait's error.
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		t.Fatalf("sluice did not exit normally: %v", err)
		return -1
	}
}

// syncBuffer is a bytes.Buffer that a test may read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.b.Bytes())
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

// started is a sluice child process that the test waits for later.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // cmd.Wait's, set before done is closed
}

// startSluiceCmd starts the sluice binary with args; it is killed when the test ends.
func startSluiceCmd(t *testing.T, dir string, args ...string) *started {
	t.Helper()
	s := &started{cmd: sluiceCmd(context.Background(), dir, args...), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// wait waits for the process to exit (failing the test after d) and returns its status.
func (s *started) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return exitStatus(t, s.err)
	case <-time.After(d):
		t.Fatalf("sluice %v still running after %v; stderr:\n%s", s.cmd.Args[1:], d, s.stderr.Bytes())
		return -1
	}
}

// waitOutput waits until the process has printed want on stdout, failing the test if it
// exits first or after bound.
func (s *started) waitOutput(t *testing.T, want []byte) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !bytes.Equal(s.stdout.Bytes(), want) {
		select {
		case <-s.done:
			t.Fatalf("sluice %v exited (%v) after printing %q, want %q; stderr %q", s.cmd.Args[1:], s.err, s.stdout.Bytes(), want, s.stderr.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice %v printed %q after %v, want %q", s.cmd.Args[1:], s.stdout.Bytes(), bound, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mixedOutput returns what the test commands write to stdout and to stderr. The two use
// disjoint bytes (stdout: numbered lowercase lines; stderr: uppercase, '-' and '|'), so
// that the merged stream can be split back into each, whatever the interleaving.
func mixedOutput(outSize, errSize int) (stdout, stderr []byte) {
	stdout = testContent(outSize)[:outSize]
	var b bytes.Buffer
	for i := 0; b.Len() < errSize; i++ {
		fmt.Fprintf(&b, "ERR-%s-%s|", strings.Map(func(r rune) rune { return 'A' + r - '0' }, strconv.Itoa(i)),
			strings.Repeat(string(rune('A'+i%26)), i%40))
	}
	return stdout, b.Bytes()[:errSize]
}

// demux splits a stream of mixedOutput's bytes into its stdout and stderr parts.
func demux(stream []byte) (stdout, stderr []byte) {
	for _, c := range stream {
		if c >= 'A' && c <= 'Z' || c == '-' || c == '|' {
			stderr = append(stderr, c)
		} else {
			stdout = append(stdout, c)
		}
	}
	return stdout, stderr
}

// writeMixedScript writes, in dir, the sources of mixedOutput and a shell script that
// writes them in chunks, alternating stdout and stderr with short pauses, then exits
// with status 3.
func writeMixedScript(t *testing.T, dir string, stdout, stderr []byte, chunks int, pause string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "out.src"), stdout, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "err.src"), stderr, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`i=0
while [ $i -lt %d ]; do
  dd if=out.src bs=%d skip=$i count=1 status=none
  dd if=err.src bs=%d skip=$i count=1 status=none >&2
  sleep %s
  i=$((i+1))
done
exit 3
`, chunks, (len(stdout)+chunks-1)/chunks, (len(stderr)+chunks-1)/chunks, pause)
	path := filepath.Join(dir, "mixed.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkStream checks that the stream at url is closed and holds exactly the command's
// stdout and stderr, merged, and returns it.
func checkStream(t *testing.T, c *http.Client, url string, stdout, stderr []byte) []byte {
	t.Helper()
	r := do(t, c, http.MethodGet, url+"?follow=false", nil)
	if r.status != http.StatusOK || !r.closed() {
		t.Fatalf("GET %s: %d, closed %v; want 200, closed", url, r.status, r.closed())
	}
	gotOut, gotErr := demux(r.body)
	if !bytes.Equal(gotOut, stdout) || !bytes.Equal(gotErr, stderr) {
		t.Fatalf("the stream (%d bytes) holds %d bytes of stdout (equal: %v) and %d of stderr (equal: %v); the command wrote %d and %d",
			len(r.body), len(gotOut), bytes.Equal(gotOut, stdout), len(gotErr), bytes.Equal(gotErr, stderr), len(stdout), len(stderr))
	}
	return r.body
}

// showLog logs the file's content if the test failed.
func showLog(t *testing.T, path string) {
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(path)
			t.Logf("%s:\n%s", filepath.Base(path), b)
		}
	})
}

// TestRunSurvivesServerKill9 proves the issue's main promise, "wrap any command with
// Sluice and never lose or repeat a byte of its output, whatever the server does":
// sluice run wraps a command writing 10 MB of mixed stdout and stderr over several
// seconds while the server is killed with SIGKILL and restarted (same port, same data
// dir) twice. The terminal gets exactly the command's stdout and stderr; the stored
// stream is exactly both, merged; the exit status is the command's (3); and a sluice
// tail following throughout prints exactly the stream, once.
func TestRunSurvivesServerKill9(t *testing.T) {
	addr, dataDir, dir := freeAddr(t), t.TempDir(), t.TempDir()
	srv := startSluice(t, addr, dataDir)
	c := newClient(t)
	url := srv.url + "/streams/run/kill9"
	stdout, stderr := mixedOutput(6<<20, 4<<20)
	script := writeMixedScript(t, dir, stdout, stderr, 100, "0.02")

	// The stream exists before it is followed: tail of an unknown stream fails.
	if r := do(t, c, http.MethodPut, url, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	follower := startSluiceCmd(t, dir, "tail", url)
	logFile := filepath.Join(dir, "run.log")
	showLog(t, logFile)
	run := startSluiceCmd(t, dir, "run", "--log-file", logFile, "--log-level", "debug", url, "--", "sh", script)

	for i, at := range []int{2 << 20, 5 << 20} {
		waitLength(t, c, url, at)
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srv.waitExit(t, bound)
		c.CloseIdleConnections()
		t.Logf("server killed %d time(s) with %d bytes stored at least", i+1, at)
		srv = startSluice(t, addr, dataDir)
	}

	if code := run.wait(t, 30*time.Second); code != 3 {
		t.Errorf("sluice run exited with %d, want the command's 3; stderr:\n%.2000s", code, run.stderr.Bytes())
	}
	if !bytes.Equal(run.stdout.Bytes(), stdout) || !bytes.Equal(run.stderr.Bytes(), stderr) {
		t.Errorf("terminal: stdout %d bytes (equal: %v), stderr %d bytes (equal: %v); want the command's %d and %d unchanged",
			run.stdout.Len(), bytes.Equal(run.stdout.Bytes(), stdout), run.stderr.Len(), bytes.Equal(run.stderr.Bytes(), stderr), len(stdout), len(stderr))
	}
	stream := checkStream(t, c, url, stdout, stderr)

	if code := follower.wait(t, 30*time.Second); code != 0 {
		t.Errorf("sluice tail exited with %d; stderr:\n%s", code, follower.stderr.Bytes())
	}
	if !bytes.Equal(follower.stdout.Bytes(), stream) {
		t.Errorf("sluice tail printed %d bytes, want the stream's %d exactly (a prefix: %v)", follower.stdout.Len(), len(stream),
			bytes.HasPrefix(stream, follower.stdout.Bytes()))
	}
}

// cutProxy is a TCP proxy that cuts each connection, both ways, after a random number
// of bytes (up to max) has passed through it: a network that drops connections at random.
type cutProxy struct {
	ln     net.Listener
	target string
	max    int
	rnd    *rand.Rand // used by the accept loop only
	cuts   atomic.Int64
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

// startCutProxy listens on loopback and forwards to target until the test ends.
func startCutProxy(t *testing.T, target string, max int) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("cut proxy seed %d", seed)
	p := &cutProxy{ln: ln, target: target, max: max, rnd: rand.New(rand.NewPCG(seed, seed)), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.done = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// track registers c to be closed at the end; false if the proxy is closing.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *cutProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		limit := int64(p.rnd.IntN(p.max))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if !p.track(client) {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				p.untrack(client)
				return
			}
			if !p.track(server) {
				p.untrack(client)
				return
			}
			var left atomic.Int64 // bytes before the cut, both ways
			left.Store(limit)
			var pipes sync.WaitGroup
			pipes.Add(2)
			pipe := func(dst, src net.Conn) {
				defer pipes.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						rest := left.Add(-int64(n))
						if rest < 0 {
							n = max(0, n+int(rest))
						}
						if _, werr := dst.Write(buf[:n]); werr != nil || rest <= 0 {
							if rest <= 0 {
								p.cuts.Add(1)
							}
							break
						}
					}
					if err != nil {
						break
					}
				}
				// Either way ending ends both: a cut, or the end of the connection.
				p.untrack(client, server)
			}
			go pipe(server, client)
			go pipe(client, server)
			pipes.Wait()
		}()
	}
}

// TestRunThroughFlakyNetwork proves "never lose or repeat a byte, whatever the network
// does": sluice run and sluice tail reach the server through a proxy that cuts every
// connection after a random number of bytes. The stream is exactly the command's output,
// the terminal got it unchanged, the exit status is the command's, and the follower
// prints exactly the stream, once.
func TestRunThroughFlakyNetwork(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	startSluice(t, addr, t.TempDir())
	proxy := startCutProxy(t, addr, 1<<20)
	c := newClient(t)
	path := "/streams/run/flaky"
	direct, viaProxy := "http://"+addr+path, "http://"+proxy.addr()+path
	stdout, stderr := mixedOutput(5<<20, 3<<20)
	script := writeMixedScript(t, dir, stdout, stderr, 80, "0.02")

	if r := do(t, c, http.MethodPut, direct, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	follower := startSluiceCmd(t, dir, "tail", viaProxy)
	logFile := filepath.Join(dir, "run.log")
	showLog(t, logFile)
	run := startSluiceCmd(t, dir, "run", "--log-file", logFile, viaProxy, "--", "sh", script)

	if code := run.wait(t, 30*time.Second); code != 3 {
		t.Errorf("sluice run exited with %d, want the command's 3; stderr:\n%.2000s", code, run.stderr.Bytes())
	}
	if !bytes.Equal(run.stdout.Bytes(), stdout) || !bytes.Equal(run.stderr.Bytes(), stderr) {
		t.Errorf("terminal: stdout %d bytes (equal: %v), stderr %d bytes (equal: %v); want the command's %d and %d",
			run.stdout.Len(), bytes.Equal(run.stdout.Bytes(), stdout), run.stderr.Len(), bytes.Equal(run.stderr.Bytes(), stderr), len(stdout), len(stderr))
	}
	stream := checkStream(t, c, direct, stdout, stderr)
	if code := follower.wait(t, 30*time.Second); code != 0 {
		t.Errorf("sluice tail exited with %d; stderr:\n%s", code, follower.stderr.Bytes())
	}
	if !bytes.Equal(follower.stdout.Bytes(), stream) {
		t.Errorf("sluice tail printed %d bytes, want the stream's %d exactly (a prefix: %v)", follower.stdout.Len(), len(stream),
			bytes.HasPrefix(stream, follower.stdout.Bytes()))
	}
	if n := proxy.cuts.Load(); n < 4 {
		t.Errorf("the proxy cut only %d connections: the test did not test resumption", n)
	} else {
		t.Logf("the proxy cut %d connections", n)
	}
}

// TestRunExitStatus proves "it exits with the command's exit status (128+N for a command
// killed by signal N)", and the shell's conventions when the command cannot run: 127
// when it is not found, 126 when it cannot be executed, each with a clear message, which
// the stream holds too.
func TestRunExitStatus(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "not-executable"), []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command []string
		code    int
		message string // on stderr, and in the stream
	}{
		{"success", []string{"sh", "-c", "echo fine"}, 0, ""},
		{"exit 3", []string{"sh", "-c", "echo failing; exit 3"}, 3, ""},
		{"exit 255", []string{"sh", "-c", "exit 255"}, 255, ""},
		{"killed by SIGKILL", []string{"sh", "-c", "echo dying; kill -KILL $$"}, 137, ""},
		{"killed by SIGTERM", []string{"sh", "-c", "kill -TERM $$"}, 143, ""},
		{"not found", []string{"no-such-command-here", "arg"}, 127, "no-such-command-here: command not found"},
		{"path not found", []string{"./no-such-file"}, 127, "./no-such-file: command not found"},
		{"not executable", []string{"./not-executable"}, 126, "./not-executable: permission denied"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fmt.Sprintf("%s/streams/status/%d", srv.url, i)
			r := runSluice(t, bound, nil, dir, append([]string{"run", url, "--"}, tt.command...)...)
			if r.code != tt.code {
				t.Errorf("exit status %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			got := do(t, c, http.MethodGet, url+"?follow=false", nil)
			if got.status != http.StatusOK && got.status != http.StatusNoContent || !got.closed() {
				t.Fatalf("stream: %d closed %v, want 200 (204 if empty), closed", got.status, got.closed())
			}
			if tt.message == "" {
				if !bytes.Equal(got.body, r.stdout) || len(r.stderr) != 0 {
					t.Errorf("stream %q, stdout %q, stderr %q: want the stream to be the command's output and nothing on stderr", got.body, r.stdout, r.stderr)
				}
				return
			}
			want := "sluice: run: " + tt.message + "\n"
			if string(r.stderr) != want || string(got.body) != want || len(r.stdout) != 0 {
				t.Errorf("stderr %q, stream %q, stdout %q; want the one line %q on stderr and in the stream", r.stderr, got.body, r.stdout, want)
			}
		})
	}
}

// lines collects a process's output lines as they come, so that a test can wait for one.
type lines struct {
	mu   sync.Mutex
	all  []string
	done chan struct{}
}

func watchLines(r io.Reader) *lines {
	l := &lines{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		s := bufio.NewScanner(r)
		for s.Scan() {
			l.mu.Lock()
			l.all = append(l.all, s.Text())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *lines) count(line string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if s == line {
			n++
		}
	}
	return n
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// waitFor waits until line has appeared n times.
func (l *lines) waitFor(t *testing.T, line string, n int) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for l.count(line) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q seen %d times, want %d; output so far: %q", line, l.count(line), n, l.get())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunForwardsSignals proves "forwards every signal it receives to the command's
// process group (not only the first)": SIGINT, SIGTERM, a second SIGINT, SIGHUP, SIGQUIT,
// SIGUSR1 and SIGUSR2, sent to sluice one after the other, each reach both the command
// and its child (the group, not just the command's pid), which trap them and say so.
// The command then ends on its own, with its own status.
func TestRunForwardsSignals(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	dir := t.TempDir()
	url := srv.url + "/streams/signals"
	script := `for s in INT TERM HUP QUIT USR1 USR2; do trap "echo child $s" $s; done
sh -c 'for s in INT TERM HUP QUIT USR1 USR2; do trap "echo grandchild $s" $s; done
echo grandchild ready
while [ ! -e stop ]; do sleep 0.01; done'
echo child done
exit 7
`
	cmd := sluiceCmd(context.Background(), dir, "run", url, "--", "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	output := watchLines(out)
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-output.done
		<-waited
	})
	go func() {
		<-output.done // Wait closes the pipe: read it all first
		waited <- cmd.Wait()
	}()

	output.waitFor(t, "grandchild ready", 1)
	signals := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	names := map[syscall.Signal]string{syscall.SIGINT: "INT", syscall.SIGTERM: "TERM", syscall.SIGHUP: "HUP",
		syscall.SIGQUIT: "QUIT", syscall.SIGUSR1: "USR1", syscall.SIGUSR2: "USR2"}
	sent := map[syscall.Signal]int{}
	for _, s := range signals {
		if err := cmd.Process.Signal(s); err != nil {
			t.Fatalf("signal %v: %v", s, err)
		}
		sent[s]++
		output.waitFor(t, "grandchild "+names[s], sent[s])
	}
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case err := <-waited:
		waited <- err
		code = exitStatus(t, err)
	case <-time.After(bound):
		t.Fatalf("sluice run still running; output %q", output.get())
	}
	if code != 7 {
		t.Errorf("exit status %d, want the command's 7; stderr %q", code, stderr.Bytes())
	}
	// The command (the group's leader, waiting for its child) runs its traps afterwards.
	for _, s := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2} {
		if output.count("child "+names[s]) == 0 {
			t.Errorf("the command did not get SIG%s; output %q", names[s], output.get())
		}
	}
	if output.count("child done") != 1 {
		t.Errorf("output %q: the command did not run to its end", output.get())
	}
	// The stream holds the same lines as stdout and stderr (where the shell reports the
	// sleeps that the signals killed), merged.
	got := do(t, c, http.MethodGet, url+"?follow=false", nil)
	want := append(output.get(), strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")...)
	if stderr.Len() == 0 {
		want = output.get()
	}
	gotLines := strings.Split(strings.TrimSuffix(string(got.body), "\n"), "\n")
	slices.Sort(want)
	slices.Sort(gotLines)
	if !slices.Equal(gotLines, want) || !got.closed() {
		t.Errorf("stream %q (closed %v), want the command's output %q and %q", got.body, got.closed(), output.get(), stderr.Bytes())
	}
}

// processGone reports whether pid has exited: it no longer exists, or is a zombie that
// its new parent has not reaped yet.
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses; the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestRunKillsLeftovers proves "kills leftover grandchildren when the command ends": a
// command that exits leaving two background children, one of them ignoring SIGTERM,
// does not keep sluice run waiting (though they hold its output pipes); both are gone
// when sluice exits (the second by SIGKILL after --kill-grace), and the exit status is
// the command's.
func TestRunKillsLeftovers(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to look at processes") // Linux only; the CI runs Linux
	}
	srv := startSluice(t, freeAddr(t), t.TempDir())
	dir := t.TempDir()
	script := `sleep 1000 &
echo $!
(trap "" TERM; exec sleep 1000) &
echo $!
echo leaving
exit 4`
	r := runSluice(t, bound, nil, dir, "run", "--kill-grace", "300ms", srv.url+"/streams/leftovers", "--", "sh", "-c", script)
	fields := strings.Fields(string(r.stdout))
	if len(fields) != 3 || fields[2] != "leaving" {
		t.Fatalf("output %q, want two pids and \"leaving\"", r.stdout)
	}
	var pids []int
	for _, f := range fields[:2] {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid %q: %v", f, err)
		}
		pids = append(pids, pid)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	if r.code != 4 {
		t.Errorf("exit status %d, want the command's 4; stderr %q", r.code, r.stderr)
	}
	deadline := time.Now().Add(bound) // sluice has killed them; the kernel may lag
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("leftover process %d still running after sluice run exited", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRunKeepsIgnoredSignals proves that sluice run does not change the signals its
// command ignores: under nohup (SIGHUP ignored) the command ignores SIGHUP too, as it
// would without sluice, and sluice does not forward it; otherwise it does not ignore it.
func TestRunKeepsIgnoredSignals(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to look at processes") // Linux only; the CI runs Linux
	}
	srv := startSluice(t, freeAddr(t), t.TempDir())
	for _, tt := range []struct {
		trap    string
		ignored bool
	}{{`trap "" HUP;`, true}, {"", false}} {
		script := fmt.Sprintf(`%s exec "$0" run "$1" -- sh -c 'grep SigIgn /proc/$$/status'`, tt.trap)
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		cmd := exec.CommandContext(ctx, "sh", "-c", script, sluiceBin, srv.url+"/streams/nohup")
		cmd.Env = childEnv()
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", cmd.Args, err)
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(out), "SigIgn:")), 16, 64)
		if err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if got := mask&(1<<(syscall.SIGHUP-1)) != 0; got != tt.ignored {
			t.Errorf("%q: the command ignores SIGHUP: %v, want %v", tt.trap, got, tt.ignored)
		}
	}
}

// TestRunServerUnreachable proves "if the server is unreachable the command still runs
// and its output is still shown": the exit status is the command's, the terminal gets
// its output unchanged, and one warning line names the URL without its query string
// (which may hold a secret), after --upload-timeout.
func TestRunServerUnreachable(t *testing.T) {
	url := "http://" + freeAddr(t) + "/streams/nowhere/1"
	r := runSluice(t, bound, nil, t.TempDir(), "run", "--upload-timeout", "1s", url+"?token=s3cr3t", "--",
		"sh", "-c", "echo to stdout; echo to stderr >&2; exit 3")
	if r.code != 3 {
		t.Errorf("exit status %d, want the command's 3", r.code)
	}
	if string(r.stdout) != "to stdout\n" {
		t.Errorf("stdout %q, want the command's", r.stdout)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "to stderr" {
		t.Fatalf("stderr %q: want the command's line and one warning", r.stderr)
	}
	if w := lines[1]; !strings.HasPrefix(w, "sluice: warning: upload to "+url+" incomplete") || strings.Contains(w, "s3cr3t") || strings.Contains(w, "token") {
		t.Errorf("warning %q: want it to name %s, without the query", w, url)
	}
}

// recorder is a reverse proxy to a server that records the requests it passes on.
type recorder struct {
	url  string
	mu   sync.Mutex
	reqs []*http.Request // without their bodies
}

// startRecorder starts a recorder in front of the server at target, until the test ends.
func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	tr := &http.Transport{}
	rp.Transport = tr
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(context.Background()))
		rec.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	rec.url = srv.URL
	return rec
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// TestRunBuslteeFlags proves "busltee's flags are accepted with the same meaning
// (--insecure/-k, --retry, --stream-retry, --connect-timeout, --log-file, --request-id
// sent as Request-Id, --log-field), --flag value and --flag=value both work, and URLs
// are logged without their query strings": with all of them, after URL as busltee allows,
// every request carries the Request-Id, sluice's logs go to the file with the fields
// and the request id and without the query, nothing but the command's output reaches the
// terminal, and the stream is the output.
func TestRunBuslteeFlags(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	recorder := startRecorder(t, srv.url)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "busltee.log")
	path := "/streams/busltee/flags"

	r := runSluice(t, bound, nil, dir, "run", recorder.url+path+"?sig=t0ps3cr3t",
		"-k", "--retry=3", "--stream-retry", "4", "--connect-timeout", "2.5", "--request-id", "req-1234",
		"--log-file", logFile, "--log-field", "app=web", "--log-field=dyno=run.1", "--",
		"sh", "-c", "echo built; echo warned >&2")
	if r.code != 0 || string(r.stdout) != "built\n" || string(r.stderr) != "warned\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the command's output only", r.code, r.stdout, r.stderr)
	}
	if got := do(t, c, http.MethodGet, srv.url+path, nil); !got.closed() || (string(got.body) != "built\nwarned\n" && string(got.body) != "warned\nbuilt\n") {
		t.Errorf("stream %q closed %v, want the output", got.body, got.closed())
	}
	reqs := recorder.requests()
	if len(reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	for _, req := range reqs {
		if id := req.Header.Get("Request-Id"); id != "req-1234" {
			t.Errorf("%s request with Request-Id %q, want req-1234", req.Method, id)
		}
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 || bytes.Contains(log, []byte("t0ps3cr3t")) {
		t.Fatalf("log file %q: want lines without the URL's query", log)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !strings.Contains(line, "app=web") || !strings.Contains(line, "dyno=run.1") || !strings.Contains(line, "request_id=req-1234") {
			t.Errorf("log line %q lacks the --log-field fields or the request id", line)
		}
	}
	if !bytes.Contains(log, []byte(recorder.url+path)) {
		t.Errorf("log file %q does not name the URL", log)
	}
}

// TestParseRunArgs proves sluice run's command line: flags before URL, and after it as
// busltee allowed; "--" before the command, or none; --flag value and --flag=value; -k;
// and that the command's own flags are left alone.
func TestParseRunArgs(t *testing.T) {
	tests := []struct {
		args    []string
		command []string
		check   func(c *runCmd) bool
	}{
		{[]string{"U", "--", "ls", "-la"}, []string{"ls", "-la"}, nil},
		{[]string{"U", "ls", "-la"}, []string{"ls", "-la"}, nil},
		{[]string{"-k", "U", "--", "cmd"}, []string{"cmd"}, func(c *runCmd) bool { return c.Client.Insecure }},
		{[]string{"--insecure", "U", "cmd"}, []string{"cmd"}, func(c *runCmd) bool { return c.Client.Insecure }},
		{[]string{"U", "-k", "--retry=3", "--", "cmd", "--retry", "9"}, []string{"cmd", "--retry", "9"},
			func(c *runCmd) bool { return c.Client.Insecure && c.Writer.Retry == 3 }},
		{[]string{"U", "--retry", "3", "cmd", "-k"}, []string{"cmd", "-k"}, func(c *runCmd) bool { return c.Writer.Retry == 3 && !c.Client.Insecure }},
		{[]string{"--connect-timeout", "0.5", "--stream-retry=60", "--log-field", "a=b", "--log-field=c=d=e", "--request-id", "r1", "U", "--", "x"}, []string{"x"},
			func(c *runCmd) bool {
				return c.Client.ConnectTimeout == seconds(500*time.Millisecond) && c.Writer.StreamRetry == 60 && c.Client.RequestID == "r1" &&
					slices.Equal(c.Client.LogField, []string{"a=b", "c=d=e"})
			}},
		{[]string{"--upload-timeout=2m", "--spool-dir", "/var/tmp", "--log-file=f.log", "U", "--", "x"}, []string{"x"},
			func(c *runCmd) bool {
				return c.Writer.UploadTimeout == 2*time.Minute && c.Writer.SpoolDir == "/var/tmp" && c.Client.LogFile == "f.log"
			}},
		{[]string{"--", "U", "x"}, []string{"x"}, nil},
		{[]string{"U", "--kill-grace", "1s", "x", "--kill-grace", "9s"}, []string{"x", "--kill-grace", "9s"},
			func(c *runCmd) bool { return c.KillGrace == time.Second }},
	}
	for _, tt := range tests {
		clearEnv(t)
		c, err := parseArgs(t, append([]string{"run"}, tt.args...)...)
		if err != nil || c.Run.URL != "U" || !slices.Equal(c.Run.Command, tt.command) {
			t.Errorf("%q: URL %q, command %q, err %v; want U, %q", tt.args, c.Run.URL, c.Run.Command, err, tt.command)
			continue
		}
		if tt.check != nil && !tt.check(&c.Run) {
			t.Errorf("%q: flags not set as given: %+v", tt.args, c.Run)
		}
	}
	// busltee's defaults.
	clearEnv(t)
	c, err := parseArgs(t, "run", "U", "x")
	if err != nil || c.Run.Writer.Retry != 5 || c.Run.Writer.StreamRetry != 60 || c.Run.Client.ConnectTimeout != seconds(time.Second) {
		t.Errorf("defaults: %v, --retry %d, --stream-retry %d, --connect-timeout %v; want busltee's 5, 60, 1s", err,
			c.Run.Writer.Retry, c.Run.Writer.StreamRetry, time.Duration(c.Run.Client.ConnectTimeout))
	}
	// The environment, and the command line over it.
	t.Setenv("SLUICE_UPLOAD_TIMEOUT", "5s")
	t.Setenv("SLUICE_REQUEST_ID", "from-env")
	c, err = parseArgs(t, "run", "--request-id", "from-flag", "U", "x")
	if err != nil || c.Run.Writer.UploadTimeout != 5*time.Second || c.Run.Client.RequestID != "from-flag" {
		t.Errorf("env and flags: %v, upload timeout %v, request id %q", err, c.Run.Writer.UploadTimeout, c.Run.Client.RequestID)
	}
}

// TestClientUsageErrors proves "errors are one clear line": a mistake in the command line
// of run, push or tail is one line on stderr that names it (without the URL's secrets),
// with exit status 2, before anything runs.
func TestClientUsageErrors(t *testing.T) {
	tests := []struct {
		args  []string
		names string
	}{
		{[]string{"run"}, "URL"},
		{[]string{"run", "http://h/streams/k"}, "command"},
		{[]string{"run", "http://h/streams/k", "--"}, "no command"},
		{[]string{"run", "--retry", "-1", "http://h/streams/k", "--", "true"}, "--retry"},
		{[]string{"run", "--connect-timeout", "soon", "http://h/streams/k", "--", "true"}, "connect-timeout"},
		{[]string{"run", "--log-field", "novalue", "http://h/streams/k", "--", "true"}, "log-field"},
		{[]string{"run", "--log-level", "loud", "http://h/streams/k", "--", "true"}, "log-level"},
		{[]string{"run", "http://h/streams/k", "--no-such-flag", "--", "true"}, "no-such-flag"},
		{[]string{"push"}, "URL"},
		{[]string{"push", "http://h/streams/k", "a", "b"}, `unexpected argument b`},
		{[]string{"push", "ftp://h/streams/k?secret=1", "f"}, "bad URL"},
		{[]string{"push", "--upload-timeout", "-1s", "http://h/streams/k"}, "upload-timeout"},
		{[]string{"tail"}, "<url>"},
		{[]string{"tail", "http://h/streams/a", "http://h/streams/b"}, "unexpected argument http://h/streams/b"},
		{[]string{"tail", "--from-offset", "-5", "http://h/streams/k"}, "from-offset"},
		{[]string{"tail", "--no-follow=maybe", "http://h/streams/k"}, "no-follow"},
	}
	for _, tt := range tests {
		r := runSluice(t, bound, nil, t.TempDir(), tt.args...)
		msg := string(r.stderr)
		if r.code != 2 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sluice: "+tt.args[0]+": ") ||
			!strings.Contains(msg, tt.names) || strings.Contains(msg, "secret") || len(r.stdout) != 0 {
			t.Errorf("%q: exit %d, stderr %q: want 2 and one line naming %q", tt.args, r.code, msg, tt.names)
		}
	}
}

// TestRunMergeOutput proves --merge-output: "the stream holds stdout and stderr in the
// exact order they were written". A command alternates 200 writes to stdout and to
// stderr; with the option, the stream and sluice's stdout are exactly that sequence, in
// order, and nothing is left on stderr; the exit status is still the command's.
func TestRunMergeOutput(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	script := `i=0
while [ $i -lt 200 ]; do
  echo "out $i"
  echo "err $i" >&2
  i=$((i+1))
done
exit 5`
	var want strings.Builder
	for i := range 200 {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	url := srv.url + "/streams/run/merged"
	r := runSluice(t, bound, nil, t.TempDir(), "run", "--merge-output", url, "--", "sh", "-c", script)
	if r.code != 5 || string(r.stdout) != want.String() || len(r.stderr) != 0 {
		t.Errorf("exit %d, stdout %d bytes (in order: %v), stderr %q; want 5, the writes in order on stdout, nothing on stderr",
			r.code, len(r.stdout), string(r.stdout) == want.String(), r.stderr)
	}
	got := do(t, c, http.MethodGet, url+"?follow=false", nil)
	if !got.closed() || string(got.body) != want.String() {
		t.Errorf("stream closed %v, %d bytes: in the order written: %v", got.closed(), len(got.body), string(got.body) == want.String())
	}
}
