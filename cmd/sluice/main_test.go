package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sluiceBin is the real sluice binary, built once by TestMain for the tests that run it
// as a child process.
var sluiceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	goTool := "go" // go test puts its own GOROOT/bin first on PATH
	if root := os.Getenv("GOROOT"); root != "" {
		if _, err := os.Stat(filepath.Join(root, "bin", "go")); err == nil {
			goTool = filepath.Join(root, "bin", "go")
		}
	}
	if out, err := exec.Command(goTool, "build", "-o", sluiceBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sluice: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// serveFlagNames are the flags sluice serve documents; each must have a SLUICE_*
// variable.
var serveFlagNames = []string{
	"addr", "data-dir", "fsync-interval", "tail-size", "max-stream-size", "max-open-streams",
	"max-followers", "max-stream-followers", "sse-keepalive", "sse-retry", "ws-ping",
	"write-timeout", "read-timeout", "shutdown-grace", "cors-origins", "debug-addr",
	"log-format", "log-level",
}

// clearEnv unsets PORT and every SLUICE_* variable for the test (t.Setenv restores them
// after), so that the machine's environment cannot leak into flag parsing.
func clearEnv(t *testing.T) {
	t.Helper()
	names := []string{"PORT"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SLUICE_") {
			names = append(names, kv[:strings.IndexByte(kv, '=')])
		}
	}
	for _, n := range names {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
}

// TestServeHelp proves "every flag can also be set by an environment variable" is
// documented: sluice serve --help (and -h) prints every flag with its SLUICE_* variable
// and ends with flag.ErrHelp, which main turns into exit status 0.
func TestServeHelp(t *testing.T) {
	clearEnv(t)
	fs, _ := serveFlags(new(bytes.Buffer))
	for _, name := range serveFlagNames {
		if fs.Lookup(name) == nil {
			t.Errorf("sluice serve has no --%s flag", name)
		}
	}
	for _, arg := range []string{"--help", "-h"} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"serve", arg}, &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("serve %s: err = %v, want flag.ErrHelp", arg, err)
		}
		help := stderr.String()
		if !strings.Contains(help, "Usage: sluice serve") {
			t.Errorf("serve %s: no usage line in:\n%s", arg, help)
		}
		_, help, _ = strings.Cut(help, "Flags:\n") // the flags' entries, past the examples
		fs.VisitAll(func(f *flag.Flag) {
			want := "  --" + f.Name + " "
			i := strings.Index(help, want)
			if i < 0 {
				t.Errorf("serve %s: help does not name --%s", arg, f.Name)
				return
			}
			// The variable is named in the flag's own entry, before the next flag's.
			entry := help[i:]
			if j := strings.Index(entry[len(want):], "\n  --"); j >= 0 {
				entry = entry[:len(want)+j]
			}
			if !strings.Contains(entry, "env "+envName(f.Name)) {
				t.Errorf("serve %s: help for --%s does not name %s:\n%s", arg, f.Name, envName(f.Name), entry)
			}
		})
	}
	if envName("fsync-interval") != "SLUICE_FSYNC_INTERVAL" {
		t.Errorf("envName(fsync-interval) = %s", envName("fsync-interval"))
	}
}

// TestUsageErrors proves that a mistake on the command line or in the environment is a
// usage error (exit status 2) that names the flag or variable at fault, and that no
// server starts.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		names string // what the error must mention
	}{
		{"no command", nil, nil, "no command"},
		{"unknown command", []string{"frobnicate"}, nil, "frobnicate"},
		{"bad flag value", []string{"serve", "--sse-keepalive", "banana"}, nil, "sse-keepalive"},
		{"bad int flag", []string{"serve", "--tail-size", "lots"}, nil, "tail-size"},
		{"unknown flag", []string{"serve", "--no-such-flag"}, nil, "no-such-flag"},
		{"stray argument", []string{"serve", "extra"}, nil, "extra"},
		{"bad log format", []string{"serve", "--log-format", "yaml"}, nil, "log-format"},
		{"bad duration env", []string{"serve"}, map[string]string{"SLUICE_SSE_KEEPALIVE": "banana"}, "SLUICE_SSE_KEEPALIVE"},
		{"bad int env", []string{"serve"}, map[string]string{"SLUICE_MAX_FOLLOWERS": "many"}, "SLUICE_MAX_FOLLOWERS"},
		{"bad level env", []string{"serve"}, map[string]string{"SLUICE_LOG_LEVEL": "loud"}, "SLUICE_LOG_LEVEL"},
		{"bad env despite good flags", []string{"serve", "--addr", "127.0.0.1:0"}, map[string]string{"SLUICE_FSYNC_INTERVAL": "1 sec"}, "SLUICE_FSYNC_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			// Were the mistake accepted, the server must neither touch ./data nor block:
			// it gets a temp dir, and a cancelled context makes Listen fail at once.
			t.Setenv("SLUICE_DATA_DIR", t.TempDir())
			t.Setenv("SLUICE_ADDR", "127.0.0.1:0")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatal("run succeeded, want a usage error")
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exitCode(%v) = %d, want 2", err, code)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("error %q does not name %q", err, tt.names)
			}
		})
	}
	if code := exitCode(errors.New("disk on fire")); code != 1 {
		t.Errorf("exitCode of a runtime error = %d, want 1", code)
	}
}

// TestUnknownCommandPrintsUsage proves that a wrong subcommand shows the command list on
// stderr, so the user sees what to type instead.
func TestUnknownCommandPrintsUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"server"}, &stdout, &stderr)
	if exitCode(err) != 2 {
		t.Fatalf("err = %v (exit %d), want a usage error", err, exitCode(err))
	}
	if !strings.Contains(stderr.String(), "sluice serve [flags]") || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q: want the usage on stderr only", stdout.String(), stderr.String())
	}
}

// TestVersionAndHelp proves `sluice version` (and --version) prints the version on stdout,
// and `sluice help` the command list, both successfully.
func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got, want := stdout.String(), "sluice "+version+"\n"; got != want {
			t.Errorf("%v printed %q, want %q", args, got, want)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "sluice serve") || !strings.Contains(stdout.String(), "SLUICE_DATA_DIR") {
		t.Errorf("help printed %q", stdout.String())
	}
}

// TestFlagsEnvPrecedence proves the order of precedence: flag over SLUICE_* variable over
// PORT (busl's and Heroku's convention, setting the default address to :$PORT) over the
// built-in default; and the documented defaults (25 s grace, 15 s SSE keepalive).
func TestFlagsEnvPrecedence(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, fs *flag.FlagSet, c *serveConfig)
	}{
		{"defaults", nil, nil, func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
			if c.addr != ":8080" || c.dataDir != "./data" || c.fsyncInterval != time.Second ||
				c.http.ShutdownGrace != 25*time.Second || c.http.SSEKeepalive != 15*time.Second ||
				c.debugAddr != "" || c.corsOrigins != "*" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"env sets", map[string]string{"SLUICE_FSYNC_INTERVAL": "250ms", "SLUICE_MAX_STREAM_SIZE": "1073741824", "SLUICE_LOG_LEVEL": "debug"}, nil,
			func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
				if c.fsyncInterval != 250*time.Millisecond || c.maxStreamSize != 1<<30 || c.logLevel.String() != "DEBUG" {
					t.Errorf("from env: fsync %v, max size %d, level %v", c.fsyncInterval, c.maxStreamSize, c.logLevel)
				}
			}},
		{"flag overrides env", map[string]string{"SLUICE_ADDR": "127.0.0.1:1111", "SLUICE_SHUTDOWN_GRACE": "3s"}, []string{"--addr", "127.0.0.1:2222"},
			func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
				if c.addr != "127.0.0.1:2222" {
					t.Errorf("addr = %q, want the flag's 127.0.0.1:2222", c.addr)
				}
				if c.http.ShutdownGrace != 3*time.Second {
					t.Errorf("shutdown grace = %v, want the env's 3s", c.http.ShutdownGrace)
				}
			}},
		{"PORT sets default addr", map[string]string{"PORT": "5123"}, nil, func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
			if c.addr != ":5123" || fs.Lookup("addr").DefValue != ":5123" {
				t.Errorf("addr = %q (default %q), want :5123", c.addr, fs.Lookup("addr").DefValue)
			}
		}},
		{"SLUICE_ADDR over PORT", map[string]string{"PORT": "5123", "SLUICE_ADDR": "127.0.0.1:7000"}, nil, func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
			if c.addr != "127.0.0.1:7000" {
				t.Errorf("addr = %q, want SLUICE_ADDR's", c.addr)
			}
		}},
		{"flag over PORT", map[string]string{"PORT": "5123"}, []string{"--addr=:6000"}, func(t *testing.T, fs *flag.FlagSet, c *serveConfig) {
			if c.addr != ":6000" {
				t.Errorf("addr = %q, want the flag's", c.addr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			fs, c := serveFlags(&stderr)
			if err := parseFlags(fs, tt.args); err != nil {
				t.Fatalf("parseFlags: %v\n%s", err, stderr.String())
			}
			tt.check(t, fs, c)
		})
	}
}

// TestBinaryExitStatus proves main's exit statuses on the real binary: 0 for --help and
// version, 2 for a usage error (named on stderr), as scripts and supervisors rely on.
func TestBinaryExitStatus(t *testing.T) {
	tests := []struct {
		args   []string
		env    []string
		code   int
		stderr string
	}{
		{[]string{"version"}, nil, 0, ""},
		{[]string{"serve", "--help"}, nil, 0, "SLUICE_SHUTDOWN_GRACE"},
		{[]string{"bogus"}, nil, 2, `unknown command "bogus"`},
		{[]string{"serve"}, []string{"SLUICE_SSE_KEEPALIVE=banana"}, 2, "SLUICE_SSE_KEEPALIVE"},
	}
	for _, tt := range tests {
		// Were the mistake accepted, the server would run: the context bounds it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sluiceBin, tt.args...)
		cmd.Env = append(childEnv(), append([]string{"SLUICE_ADDR=127.0.0.1:0"}, tt.env...)...)
		cmd.Dir = t.TempDir()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if code != tt.code || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("%v %v: exit %d, stderr %q; want exit %d mentioning %q", tt.env, tt.args, code, stderr.String(), tt.code, tt.stderr)
		}
	}
}
