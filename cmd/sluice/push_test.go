package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/nettest"
)

// TestPushFile proves "sluice push URL FILE publishes a file, durable, quiet when not on
// a terminal; exit 0 when fully delivered": a file with every byte value is stored
// exactly, the stream is closed, and nothing is printed.
func TestPushFile(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	dir := t.TempDir()
	content := bytes.Repeat(allBytes(), 12<<10) // 3 MiB
	file := filepath.Join(dir, "build.log")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	url := srv.url + "/streams/push/file"
	r := runSluice(t, bound, nil, dir, "push", url, file)
	if r.code != 0 || len(r.stdout) != 0 || len(r.stderr) != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and no output", r.code, r.stdout, r.stderr)
	}
	got := do(t, c, http.MethodGet, url, nil)
	if !got.closed() || !bytes.Equal(got.body, content) {
		t.Fatalf("stream: closed %v, %d bytes (equal %v), want the file's %d, closed", got.closed(), len(got.body), bytes.Equal(got.body, content), len(content))
	}
	// Pushing the same file again is harmless: the stream already holds it.
	if r := runSluice(t, bound, nil, dir, "push", url, file); r.code != 0 {
		t.Errorf("second push of the same file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// allBytes returns the 256 byte values, which a stream must carry unchanged.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestPushStdin proves "sluice push URL [FILE|-]" reads stdin when FILE is - or missing.
func TestPushStdin(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	content := testContent(1 << 20)
	for _, args := range [][]string{{"-"}, nil} {
		url := srv.url + "/streams/push/stdin" + strings.Join(args, "")
		r := runSluice(t, bound, bytes.NewReader(content), t.TempDir(), append([]string{"push", url}, args...)...)
		if r.code != 0 || len(r.stderr) != 0 {
			t.Fatalf("push %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		if got := do(t, c, http.MethodGet, url, nil); !got.closed() || !bytes.Equal(got.body, content) {
			t.Errorf("push %v: stream closed %v, %d bytes, want stdin's %d", args, got.closed(), len(got.body), len(content))
		}
	}
}

// TestPushThroughFlakyNetwork proves push is "durable as above": through a proxy that
// cuts connections at random, the file is stored exactly, once, and push exits 0.
func TestPushThroughFlakyNetwork(t *testing.T) {
	addr := freeAddr(t)
	startSluice(t, addr, t.TempDir())
	proxy := startCutProxy(t, addr, 1<<20)
	c := newClient(t)
	dir := t.TempDir()
	content := testContent(6 << 20)
	file := filepath.Join(dir, "big.log")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	path := "/streams/push/flaky"
	if r := runSluice(t, 30*time.Second, nil, dir, "push", "http://"+proxy.addr()+path, file); r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if got := do(t, c, http.MethodGet, "http://"+addr+path, nil); !got.closed() || !bytes.Equal(got.body, content) {
		t.Fatalf("stream closed %v, %d bytes (equal %v), want %d", got.closed(), len(got.body), bytes.Equal(got.body, content), len(content))
	}
	if proxy.cuts.Load() == 0 {
		t.Error("the proxy cut no connection: the test did not test resumption")
	}
}

// TestPushFailures proves "non-zero with a clear one-line message otherwise": a server
// that cannot be connected to (after 1 + --retry attempts) exits 7, as curl does; a
// stream already closed with other bytes (refused: no retry mends it, so none is made)
// and a missing file exit 1; each with one line naming the problem, and the URL without
// its query string.
func TestPushFailures(t *testing.T) {
	srv := startSluice(t, freeAddr(t), t.TempDir())
	c := newClient(t)
	rec := startRecorder(t, srv.url)
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("new notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	closed := srv.url + "/streams/push/closed"
	if r := do(t, c, http.MethodPost, closed, []byte("old notes, closed\n")); r.status != http.StatusOK || !r.closed() {
		t.Fatalf("publish: %d", r.status)
	}
	// A stream closed with the file's bytes and more: what is pushed matches, yet the
	// stream is not the file.
	longer := srv.url + "/streams/push/longer"
	if r := do(t, c, http.MethodPost, longer, []byte("new notes\nand more\n")); r.status != http.StatusOK || !r.closed() {
		t.Fatalf("publish: %d", r.status)
	}
	nowhere := "http://" + freeAddr(t) + "/streams/push/nowhere"
	tests := []struct {
		name string
		args []string
		code int
		want []string // in the message
	}{
		{"unknown server", []string{"push", "--retry", "2", nowhere + "?token=s3cr3t", file}, 7, []string{"push to " + nowhere + " failed", "refused"}},
		{"closed with other bytes", []string{"push", rec.url + "/streams/push/closed?token=s3cr3t", file}, 1, []string{"push to " + rec.url + "/streams/push/closed failed", "closed"}},
		{"closed with more bytes", []string{"push", rec.url + "/streams/push/longer", file}, 1, []string{"push to " + rec.url + "/streams/push/longer failed", "closed"}},
		{"missing file", []string{"push", closed, filepath.Join(dir, "missing.txt")}, 1, []string{"missing.txt", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runSluice(t, bound, nil, dir, tt.args...)
			msg := string(r.stderr)
			if r.code != tt.code || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "sluice: ") || strings.Contains(msg, "s3cr3t") {
				t.Fatalf("exit %d, stderr %q: want %d and one line without the query", r.code, msg, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
	if got := do(t, c, http.MethodGet, closed, nil); string(got.body) != "old notes, closed\n" {
		t.Errorf("the closed stream changed: %q", got.body)
	}
	if reqs := rec.requests(); len(reqs) > 4 {
		t.Errorf("two pushes to closed streams made %d requests, want no retries (1 each, or a publish and a HEAD)", len(reqs))
	}
}

// TestProgressLine proves what the progress line shows: bytes confirmed of the total,
// percentage, bar, rate and time left for a file; bytes sent and read, and the rate, for
// stdin; and that it keeps within the terminal's width less one column, leaving out the
// bar, then the time left, then the rate, as the terminal narrows.
func TestProgressLine(t *testing.T) {
	tests := []struct {
		acked, read, size int64
		rate              float64
		width             int
		want              string
	}{
		{0, 0, 10 << 20, 0, 80, "[>                       ]   0%  0 B / 10.0 MiB  0 B/s  ETA -"},
		{5 << 20, 10 << 20, 10 << 20, 1 << 20, 80, "[============>           ]  50%  5.0 MiB / 10.0 MiB  1.0 MiB/s  ETA 5s"},
		{10 << 20, 10 << 20, 10 << 20, 2 << 20, 80, "[========================] 100%  10.0 MiB / 10.0 MiB  2.0 MiB/s"},
		{0, 0, 0, 0, 80, "[========================] 100%  0 B / 0 B  0 B/s"},
		{1536, 3 << 30, -1, 512, 80, "1.5 KiB sent, 3.0 GiB read  512 B/s"},
		{5 << 20, 10 << 20, 10 << 20, 1 << 20, 60, "[======>      ]  50%  5.0 MiB / 10.0 MiB  1.0 MiB/s  ETA 5s"},
		{5 << 20, 10 << 20, 10 << 20, 1 << 20, 40, "50%  5.0 MiB / 10.0 MiB  1.0 MiB/s"},
		{5 << 20, 10 << 20, 10 << 20, 1 << 20, 30, "50%  5.0 MiB / 10.0 MiB"},
		{5 << 20, 10 << 20, 10 << 20, 1 << 20, 12, "50%"},
		{1536, 3 << 30, -1, 512, 30, "1.5 KiB sent, 3.0 GiB read"},
		{1536, 3 << 30, -1, 512, 20, "1.5 KiB sent"},
		{1536, 3 << 30, -1, 512, 4, "1.5"},
	}
	for _, tt := range tests {
		got := progressLine(tt.acked, tt.read, tt.size, tt.rate, tt.width)
		if got != tt.want || len(got) >= tt.width {
			t.Errorf("progressLine(%d, %d, %d, %v, %d) =\n%q, want\n%q (under %d columns)", tt.acked, tt.read, tt.size, tt.rate, tt.width, got, tt.want, tt.width)
		}
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if isTerminal(devNull) || isTerminal(&bytes.Buffer{}) {
		t.Error("isTerminal: /dev/null or a buffer taken for a terminal")
	}
}

// TestPushRetries proves that --retry means what busltee's does, retries after the
// first attempt, so that --retry 0 is one attempt: against a server that drops every
// connection, sluice push makes 1 + --retry of them, and then fails.
func TestPushRetries(t *testing.T) {
	for _, retry := range []int{0, 2} {
		url, accepted := nettest.Refuser(t)
		r := runSluice(t, bound, strings.NewReader("lost\n"), t.TempDir(), "push", "--retry", strconv.Itoa(retry), url+"/streams/k")
		if r.code != 1 || accepted.Load() != int64(retry+1) {
			t.Errorf("--retry %d: exit %d after %d connections, stderr %q; want 1 after %d", retry, r.code, accepted.Load(), r.stderr, retry+1)
		}
	}
}
