//go:build unix

// Package nginxtest runs a real nginx for tests: the load balancer in front of a cluster
// (cmd/sluice) and Nchan for the bench's comparison (bench).
package nginxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
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
