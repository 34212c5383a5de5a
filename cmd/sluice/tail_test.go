package main

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTailClosedStream proves "sluice tail follows a stream to stdout; exit 0 when the
// stream is closed", with --from-offset: the exact bytes (every byte value, which a
// terminal-minded tool might mangle) from the offset given, and nothing for an offset at
// the end; an offset beyond the end of a closed stream is an error.
func TestTailClosedStream(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	url := srv.url + "/streams/tail/closed"
	content := append(bytes.Repeat(allBytes(), 1<<10), testContent(1<<20)...)
	if r := do(t, c, http.MethodPost, url, content); r.status != http.StatusOK || !r.closed() {
		t.Fatalf("publish: %d", r.status)
	}
	for _, off := range []int{0, 1, 300_000, len(content) - 1, len(content)} {
		args := []string{"tail", url}
		if off > 0 {
			args = []string{"tail", "--from-offset", strconv.Itoa(off), url}
		}
		r := runSluice(t, bound, nil, t.TempDir(), args...)
		if r.code != 0 || !bytes.Equal(r.stdout, content[off:]) || len(r.stderr) != 0 {
			t.Errorf("tail from %d: exit %d, %d bytes (equal %v), stderr %q; want 0 and the %d bytes from there",
				off, r.code, len(r.stdout), bytes.Equal(r.stdout, content[off:]), r.stderr, len(content)-off)
		}
	}
	r := runSluice(t, bound, nil, t.TempDir(), "tail", "--from-offset="+strconv.Itoa(len(content)+1), url+"?token=s3cr3t")
	if msg := string(r.stderr); r.code != 1 || len(r.stdout) != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, url) ||
		!strings.Contains(msg, "416") || strings.Contains(msg, "s3cr3t") {
		t.Errorf("tail beyond the end: exit %d, stdout %q, stderr %q; want 1 and one line naming the URL without query, and the 416", r.code, r.stdout, msg)
	}
}

// TestTailFollowsLive proves that sluice tail follows an open stream live and ends,
// with exit status 0, when it is closed: it prints each piece published, in order, once.
func TestTailFollowsLive(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	url := srv.url + "/streams/tail/live"
	content := testContent(300_000)
	if r := do(t, c, http.MethodPut, url, nil); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d", r.status)
	}
	follower := startSluiceCmd(t, t.TempDir(), "tail", url)
	pieces := []int{0, 1, 70_000, 150_001, 299_999, len(content)}
	for i := 1; i < len(pieces); i++ {
		from, to := pieces[i-1], pieces[i]
		last := i == len(pieces)-1
		r := do(t, c, http.MethodPost, url, content[from:to], "Stream-Offset", strconv.Itoa(from), "Stream-Close", strconv.FormatBool(last))
		if r.status != http.StatusOK {
			t.Fatalf("publish %d-%d: %d", from, to, r.status)
		}
	}
	if code := follower.wait(t, bound); code != 0 || !bytes.Equal(follower.stdout.Bytes(), content) {
		t.Fatalf("tail: exit %d, %d bytes (equal %v), stderr %q; want 0 and the %d published", code, follower.stdout.Len(),
			bytes.Equal(follower.stdout.Bytes(), content), follower.stderr.Bytes(), len(content))
	}
}

// TestTailNoFollow proves --no-follow: sluice tail prints what an open stream holds now
// and exits 0 instead of waiting for more.
func TestTailNoFollow(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	url := srv.url + "/streams/tail/open"
	content := testContent(200_000)
	if r := do(t, c, http.MethodPost, url, content, "Stream-Close", "false"); r.status != http.StatusOK || r.closed() {
		t.Fatalf("publish: %d, closed %v", r.status, r.closed())
	}
	for _, args := range [][]string{{"tail", "--no-follow", url}, {"tail", "--no-follow", "--from-offset", "1000", url}} {
		want := content
		if len(args) > 3 {
			want = content[1000:]
		}
		r := runSluice(t, bound, nil, t.TempDir(), args...)
		if r.code != 0 || !bytes.Equal(r.stdout, want) {
			t.Errorf("%v: exit %d, %d bytes, stderr %q; want 0 and the %d stored", args, r.code, len(r.stdout), r.stderr, len(want))
		}
	}
}

// TestTailUnknownStream proves "non-zero with a clear message when it does not exist".
func TestTailUnknownStream(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	url := srv.url + "/streams/tail/never-created"
	for _, args := range [][]string{{"tail", url}, {"tail", "--no-follow", url}} {
		r := runSluice(t, bound, nil, t.TempDir(), args...)
		if want := "sluice: tail: stream " + url + " does not exist\n"; r.code != 1 || string(r.stderr) != want || len(r.stdout) != 0 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 1 and %q", args, r.code, r.stderr, r.stdout, want)
		}
	}
}

// TestTailInterrupted proves the documented exit status of a follow that the user stops:
// 130 after SIGINT and 143 after SIGTERM, quietly, having printed what it got.
func TestTailInterrupted(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		url := srv.url + "/streams/tail/stopped/" + strconv.Itoa(tt.code)
		if r := do(t, c, http.MethodPost, url, []byte("so far\n"), "Stream-Close", "false"); r.status != http.StatusOK {
			t.Fatalf("publish: %d", r.status)
		}
		follower := startSluiceCmd(t, t.TempDir(), "tail", url)
		follower.waitOutput(t, []byte("so far\n")) // it is following
		if err := follower.cmd.Process.Signal(tt.sig); err != nil {
			t.Fatal(err)
		}
		if code := follower.wait(t, bound); code != tt.code || follower.stderr.Len() != 0 {
			t.Errorf("tail after %v: exit %d, stderr %q; want %d quietly", tt.sig, code, follower.stderr.Bytes(), tt.code)
		}
	}
}

// TestTailServerDown proves "a follower of an unreachable server fails within a bounded,
// documented time, with a one-line error and a distinct exit status": against a port
// where nothing listens, sluice tail exits with status 7 once --retry-max-time has
// passed (and at once with --retry 0), its last line on stderr the error, naming the
// URL; and a follower whose server is killed while it follows exits 7 the same way,
// having written what the server sent.
func TestTailServerDown(t *testing.T) {
	down := "http://" + freeAddr(t) + "/streams/tail/down"
	for _, args := range [][]string{{"--retry-max-time", "2s"}, {"--retry", "0"}, {"--retry=2", "--retry-max-time=0"}} {
		start := time.Now()
		r := runSluice(t, bound, nil, t.TempDir(), append(append([]string{"tail"}, args...), down)...)
		lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
		last := lines[len(lines)-1]
		if r.code != 7 || !strings.HasPrefix(last, "sluice: tail "+down+": ") || !strings.Contains(last, "refused") || len(r.stdout) != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 7 and a last line naming the URL and the refusal", args, r.code, r.stderr)
		}
		if args[1] == "2s" && time.Since(start) < 2*time.Second {
			t.Errorf("%v: gave up after %v, before --retry-max-time", args, time.Since(start))
		}
	}

	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	url := srv.url + "/streams/tail/killed"
	if r := do(t, c, http.MethodPost, url, []byte("so far\n"), "Stream-Close", "false"); r.status != http.StatusOK {
		t.Fatalf("publish: %d", r.status)
	}
	follower := startSluiceCmd(t, t.TempDir(), "tail", "--retry-max-time", "1s", url)
	follower.waitOutput(t, []byte("so far\n"))
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := follower.wait(t, bound); code != 7 || !bytes.Equal(follower.stdout.Bytes(), []byte("so far\n")) {
		t.Errorf("tail of a killed server: exit %d, stdout %q, stderr %q; want 7 after what was sent", code, follower.stdout.Bytes(), follower.stderr.Bytes())
	}
}
