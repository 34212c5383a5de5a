//go:build unix

// Package nginxtest runs a real nginx for tests: the load balancer in front of a cluster
// (cmd/sluice) and Nchan for the bench's comparison (bench).
package nginxtest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Start runs nginx in the foreground with config conf, from a directory of its own (the
// prefix, which relative paths in conf such as "pid nginx.pid;" and "error_log
// logs/error.log;" are under; conf must not leave them at the system's paths), until
// the test ends; the caller waits for it to answer. It returns the master's pid and a
// channel closed when nginx exits (at start: the port was taken, or the config refused).
// Its output and error log are logged if the test fails.
func Start(t testing.TB, conf string) (pid int, exited <-chan struct{}) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx not found: apt-get install nginx (.ci/run does)")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-g", "daemon off;")
	// Output to a file, not a pipe: nginx's workers inherit it, and a pipe would keep
	// Wait waiting for them. Its own process group, so that the workers die with it.
	out, err := os.Create(filepath.Join(logs, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			o, _ := os.ReadFile(out.Name())
			e, _ := os.ReadFile(filepath.Join(logs, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", o, e)
		}
	})
	return cmd.Process.Pid, done
}

// nchanModule is where Debian's libnginx-mod-nchan puts the module that
// deploy/nchan-bench.conf loads.
const nchanModule = "/usr/lib/nginx/modules/ngx_nchan_module.so"

// StartNchan runs nginx with Nchan, configured by the shipped deploy/nchan-bench.conf
// (at confPath) on a free loopback port, and not pinned to a core, until the test ends,
// and returns its base URL and the master's pid.
func StartNchan(t testing.TB, confPath string) (url string, pid int) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatal("nginx not found: apt-get install nginx libnginx-mod-nchan (.ci/run does)")
	}
	if _, err := os.Stat(nchanModule); err != nil {
		t.Fatal("Nchan not found: apt-get install libnginx-mod-nchan (.ci/run does)")
	}
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	const listen, pin = "listen 127.0.0.1:8081;", "worker_cpu_affinity 0001;"
	if strings.Count(string(conf), listen) != 1 || strings.Count(string(conf), pin) != 1 {
		t.Fatalf("%s: want one %q and one %q to replace", confPath, listen, pin)
	}
	for attempt := 0; ; attempt++ { // a free port can be taken before nginx binds it
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := strings.Replace(string(conf), listen, "listen "+addr+";", 1)
		c = strings.Replace(c, pin, "", 1)
		if pid, ok := runNchan(t, c, addr); ok {
			return "http://" + addr, pid
		}
		if attempt == 2 {
			t.Fatal("nginx did not start")
		}
	}
}

// runNchan starts nginx with config conf and waits until Nchan answers on addr; false if
// nginx exited first (the port was taken).
func runNchan(t testing.TB, conf, addr string) (pid int, ok bool) {
	pid, exited := Start(t, conf)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The publisher location answers a GET of a channel that does not exist with 404:
		// the worker is up and Nchan is loaded.
		if resp, err := http.Get("http://" + addr + "/pub/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET /pub/ready: %s, want 404 from Nchan", resp.Status)
			}
			return pid, true
		}
		select {
		case <-exited:
			t.Log("nginx exited at start")
			return 0, false
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx on %s not ready", addr)
		}
	}
}
