//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/nginxtest"
)

// startNginx runs nginx with the shipped deploy/nginx.conf, its upstream servers and
// listen address replaced by the test's, and returns its base URL.
func startNginx(t *testing.T, upstreams []string) string {
	t.Helper()
	conf, err := os.ReadFile("../../deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "        server %s max_fails=1 fail_timeout=2s;\n", u)
	}
	addr := freeAddr(t)
	c := regexp.MustCompile(`(?m)^\s*server 10\.0\.0\.\d+:8080[^\n]*\n`).ReplaceAllString(string(conf), "")
	c = strings.Replace(c, "upstream sluice {\n", "upstream sluice {\n"+servers.String(), 1)
	c = strings.Replace(c, "listen 80;", "listen "+addr+";", 1)
	c = strings.Replace(c, "worker_processes auto;", "worker_processes 1;", 1)
	// Its own pid file and error log, under nginx's directory, not the system's.
	nginxtest.Start(t, "pid nginx.pid;\nerror_log logs/error.log;\n"+c)
	url := "http://" + addr
	deadline := time.Now().Add(bound)
	for {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx on %s not ready", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resumingFollower follows url's stream raw, and on an incomplete response resumes
// from the bytes it counted through resumeURL (the balancer), until a clean end.
func resumingFollower(t *testing.T, c *http.Client, url, resumeURL string) (got func() []byte, wait func() error) {
	var mu sync.Mutex
	var b []byte
	done := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		u := url
		deadline := time.Now().Add(2 * bound)
		for {
			mu.Lock()
			off := len(b)
			mu.Unlock()
			req, _ := http.NewRequest(http.MethodGet, u+"?offset="+strconv.Itoa(off), nil)
			resp, err := c.Do(req)
			if err == nil && resp.StatusCode == http.StatusOK {
				buf := make([]byte, 32<<10)
				for {
					n, rerr := resp.Body.Read(buf)
					mu.Lock()
					b = append(b, buf[:n]...)
					mu.Unlock()
					if rerr == io.EOF {
						resp.Body.Close()
						done <- nil
						return
					}
					if rerr != nil {
						break
					}
				}
				resp.Body.Close()
			} else if err == nil {
				resp.Body.Close()
			}
			u = resumeURL
			select {
			case <-stop:
				done <- errors.New("stopped")
				return
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				done <- fmt.Errorf("follower of %s gave up at %d bytes", url, off)
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
	got = func() []byte { mu.Lock(); defer mu.Unlock(); return bytes.Clone(b) }
	wait = func() error {
		select {
		case err := <-done:
			done <- err
			return err
		case <-time.After(3 * bound):
			return errors.New("follower still running")
		}
	}
	return got, wait
}

// TestClusterBehindNginx is issue 6's end-to-end test: three `sluice serve --nats`
// instances behind nginx configured with the shipped deploy/nginx.conf, a producer
// publishing 10 MB through the balancer (one acknowledged POST per 256 KiB, resuming
// from HEAD after a failure) while one Sluice instance is SIGKILLed and then one of the
// three NATS nodes is shut down (in-process, so a shutdown stands for SIGKILL); followers
// attached to every instance and through the balancer resume through the balancer after
// losing theirs, and all end with byte-identical copies: nothing lost or doubled.
func TestClusterBehindNginx(t *testing.T) {
	nc := startNATS(t)
	var inst []*proc
	var ups []string
	for range 3 {
		p := startSluice(t, freeAddr(t), t.TempDir(), "--nats", nc.URLs(), "--archive", "off")
		inst, ups = append(inst, p), append(ups, p.addr)
	}
	lb := startNginx(t, ups)
	c := newClient(t)
	const key = "/streams/e2e/ten-mb"
	content := testContent(10 << 20)
	const chunk = 256 << 10

	if r := do(t, c, http.MethodPost, lb+key, content[:chunk], "Stream-Close", "false"); r.status != http.StatusOK {
		t.Fatalf("first publish through nginx: %d %q", r.status, r.body)
	}
	type f struct {
		got  func() []byte
		wait func() error
	}
	var fs []f
	for _, p := range inst {
		g, w := resumingFollower(t, c, p.url+key, lb+key)
		fs = append(fs, f{g, w})
	}
	for range 3 {
		g, w := resumingFollower(t, c, lb+key, lb+key)
		fs = append(fs, f{g, w})
	}

	acked := chunk
	deadline := time.Now().Add(2 * bound)
	killedSluice, killedNATS := false, false
	for acked < len(content) {
		if time.Now().After(deadline) {
			t.Fatalf("producer stuck at %d", acked)
		}
		if !killedSluice && acked >= len(content)/3 {
			killedSluice = true
			inst[0].cmd.Process.Kill() // SIGKILL
			inst[0].waitExit(t, bound)
		}
		if !killedNATS && acked >= 2*len(content)/3 {
			killedNATS = true
			nc.Stop(1)
		}
		end := min(acked+chunk, len(content))
		req, _ := http.NewRequest(http.MethodPost, lb+key, bytes.NewReader(content[acked:end]))
		req.Header.Set("Stream-Offset", strconv.Itoa(acked))
		req.Header.Set("Stream-Close", strconv.FormatBool(end == len(content)))
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			acked = end
			continue
		}
		// As a producer does after a failure: ask the length, resend from there.
		t.Logf("publish at %d failed (%v %v); resuming from HEAD", acked, err, resp)
		r := do(t, c, http.MethodHead, lb+key, nil)
		if r.status == http.StatusOK {
			acked = r.length(t)
		}
	}
	for i, f := range fs {
		if err := f.wait(); err != nil {
			t.Fatalf("follower %d: %v", i, err)
		}
		if got := f.got(); !bytes.Equal(got, content) {
			t.Fatalf("follower %d has %d bytes, want the %d published, identical", i, len(got), len(content))
		}
	}
}
