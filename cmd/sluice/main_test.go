package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
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
	if out, err := exec.Command(goTool(), "build", "-o", sluiceBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sluice: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" { // go test puts its own GOROOT/bin first on PATH
		if _, err := os.Stat(filepath.Join(root, "bin", "go")); err == nil {
			return filepath.Join(root, "bin", "go")
		}
	}
	return "go"
}

// serveFlagNames are the flags sluice serve documents; each must have a SLUICE_*
// variable.
var serveFlagNames = []string{
	"addr", "data-dir", "fsync-interval", "tail-size", "max-stream-size", "max-open-streams",
	"max-followers", "max-stream-followers", "sse-keepalive", "sse-retry", "ws-ping",
	"write-timeout", "read-timeout", "long-poll-timeout", "max-append", "shutdown-grace", "idle-close", "index", "debug-addr",
	"log-format", "log-level", "archive", "archive-retention", "s3-endpoint", "s3-region",
	"s3-path-style", "s3-access-key", "s3-secret-key", "s3-session-token", "nats", "nats-creds",
	"nats-tls-ca", "nats-tls-cert", "nats-tls-key", "nats-replicas", "nats-linger", "nats-name",
	"auth-key", "auth-key-file", "auth-public-key", "public-read", "publish-credentials", "stream-token-ttl",
	"cors-origins", "tls-cert", "tls-key", "trust-proxy", "require-https", "rate-limit", "rate-burst",
	"max-client-requests",
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

// parseArgs parses args as sluice's command line, in this process, and returns what the
// parser set, or its error.
func parseArgs(t *testing.T, args ...string) (*cli, error) {
	t.Helper()
	c := &cli{}
	p, err := newParser(c, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(args)
	return c, err
}

// commands are the commands of sluice's command line, by their path ("bench fanout"),
// with their flags, except those of the root (--help, --version).
func commands(t *testing.T) map[string][]*kong.Flag {
	t.Helper()
	p, err := newParser(&cli{}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cmds := map[string][]*kong.Flag{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		if n.Type == kong.CommandNode && len(n.Children) == 0 {
			cmds[n.Path()] = n.Flags
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Model.Node)
	return cmds
}

// TestHelp proves that every command documents itself: sluice CMD --help (and -h)
// prints on stdout, with exit status 0 and nothing on stderr, the command's usage, its
// exit statuses, and every flag with its environment variable (SLUICE_ and the flag's
// name; SLUICE_BENCH_ under bench, SLUICE_HEALTH_ under health) and its default.
func TestHelp(t *testing.T) {
	cmds := commands(t)
	for _, name := range serveFlagNames {
		if !slices.ContainsFunc(cmds["serve"], func(f *kong.Flag) bool { return f.Name == name }) {
			t.Errorf("sluice serve has no --%s flag", name)
		}
	}
	for path, flags := range cmds {
		for _, h := range []string{"--help", "-h"} {
			args := append(strings.Fields(path), h)
			r := runSluice(t, bound, nil, t.TempDir(), args...)
			help := string(r.stdout)
			if r.code != 0 || len(r.stderr) != 0 || !strings.Contains(help, "Usage: sluice "+path) {
				t.Fatalf("sluice %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), r.code, r.stderr, help)
			}
			if !strings.Contains(help, "Exit status:") {
				t.Errorf("sluice %s: no exit statuses in:\n%s", strings.Join(args, " "), help)
			}
			entries := flagEntries(help)
			for _, f := range flags {
				env := "SLUICE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
				if cmd, _, _ := strings.Cut(path, " "); ownEnv[cmd] {
					env = "SLUICE_" + strings.ToUpper(cmd) + "_" + env[len("SLUICE_"):]
				}
				entry, ok := entries[f.Name]
				switch {
				case !ok:
					t.Errorf("sluice %s: help does not name --%s", path, f.Name)
				case !strings.Contains(entry, "$"+env):
					t.Errorf("sluice %s: help for --%s does not name %s: %q", path, f.Name, env, entry)
				case f.Default != "" && f.Default != "0" && f.Default != "false" && !strings.Contains(entry, "default "+f.Default):
					t.Errorf("sluice %s: help for --%s does not give its default %s: %q", path, f.Name, f.Default, entry)
				}
			}
		}
	}
}

// flagEntries returns the entries of the flags in a command's help, by name, each on one
// line: an entry starts with the flag ("-k, --insecure", "--retry=N") and goes on in
// the lines indented further.
func flagEntries(help string) map[string]string {
	_, help, _ = strings.Cut(help, "\nFlags:\n")
	start := regexp.MustCompile(`^ {2,6}(?:-\w, )?--([a-z0-9-]+)`)
	entries := map[string]string{}
	name := ""
	for _, line := range strings.Split(help, "\n") {
		if m := start.FindStringSubmatch(line); m != nil {
			name = m[1]
		} else if strings.TrimSpace(line) == "" || !strings.HasPrefix(line, "   ") {
			name = ""
		}
		if name != "" {
			entries[name] += " " + strings.TrimSpace(line)
		}
	}
	return entries
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
			if !strings.Contains(err.Error(), tt.names) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line naming %q", err, tt.names)
			}
		})
	}
	if code := exitCode(errors.New("disk on fire")); code != 1 {
		t.Errorf("exitCode of a runtime error = %d, want 1", code)
	}
}

// TestTypoSuggestion proves that a typo in a command or a flag gets one line on stderr
// that suggests what was meant, with exit status 2 and nothing on stdout: not the whole
// usage, nor the error twice.
func TestTypoSuggestion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--adr", "127.0.0.1:0"}, `sluice: serve: unknown flag --adr, did you mean "--addr"?`},
		{[]string{"servr"}, `did you mean "serve"?`},
		{[]string{"tail", "--no-folow", "http://127.0.0.1:1/streams/k"}, `did you mean "--no-follow"?`},
		{[]string{"bench", "fanot", "http://127.0.0.1:1"}, `did you mean "fanout"?`},
	} {
		r := runSluice(t, bound, nil, t.TempDir(), tt.args...)
		msg := string(r.stderr)
		if r.code != 2 || len(r.stdout) != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.want) {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 2 and the one line %q", strings.Join(tt.args, " "), r.code, r.stdout, msg, tt.want)
		}
	}
}

// TestNoCommandPrintsUsage proves that sluice alone shows the command list on stderr,
// with exit status 2, so that the user sees what to type.
func TestNoCommandPrintsUsage(t *testing.T) {
	r := runSluice(t, bound, nil, t.TempDir())
	if r.code != 2 || len(r.stdout) != 0 || !strings.Contains(string(r.stderr), "serve [flags]") ||
		!strings.Contains(string(r.stderr), "SLUICE_DATA_DIR") {
		t.Errorf("exit %d, stdout %q, stderr %q: want 2 and the usage on stderr only", r.code, r.stdout, r.stderr)
	}
}

// TestVersionAndHelp proves `sluice help [COMMAND]` prints the command list or the
// command's help, successfully.
func TestVersionAndHelp(t *testing.T) {
	for args, want := range map[string]string{"help": "serve [flags]", "help bench fanout": "Usage: sluice bench fanout"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), strings.Fields(args), &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout.String(), want) || !strings.Contains(stdout.String(), "SLUICE_") {
			t.Errorf("%s printed %q", args, stdout.String())
		}
	}
}

// TestVersion proves that sluice version (and --version) prints the version from the
// build information, not "dev": on the real binary, built as the tests build it, the
// module's version ("(devel)" from a checkout) and the Go version and platform; built
// with -X main.version, that version; and, from the VCS settings the toolchain records
// in a clone, the commit, whether the tree was modified, and the commit's time.
func TestVersion(t *testing.T) {
	goLine := fmt.Sprintf("go     %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runSluice(t, bound, nil, t.TempDir(), args...)
		out := string(r.stdout)
		if r.code != 0 || !strings.HasPrefix(out, "sluice ") || strings.HasPrefix(out, "sluice dev") || !strings.HasSuffix(out, goLine) {
			t.Errorf("sluice %v: exit %d, %q; want the module's version and %q", args, r.code, out, goLine)
		}
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command(goTool(), "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "sluice v9.8.7-test\n") {
		t.Errorf("built with -X main.version: %v, %q", err, out)
	}
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "39c4d18e5b0a"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionText(bi), "sluice v1.2.3\ncommit 39c4d18e5b0a (modified)\ndate   2026-11-30T10:00:00Z\n"+goLine; got != want {
		t.Errorf("versionText = %q, want %q", got, want)
	}
	if got, want := versionText(nil), "sluice (devel)\n"+goLine; got != want {
		t.Errorf("versionText without build information = %q, want %q", got, want)
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
		check func(t *testing.T, c *serveCmd)
	}{
		{"defaults", nil, nil, func(t *testing.T, c *serveCmd) {
			if c.Addr != ":8080" || c.DataDir != "./data" || c.FsyncInterval != time.Second ||
				c.ShutdownGrace != 25*time.Second || c.SSEKeepalive != 15*time.Second ||
				c.DebugAddr != "" || c.Security.CORSOrigins != "" || c.IdleClose != 0 || c.Security.StreamTokenTTL != 24*time.Hour || c.Nats.Name != "sluice" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"env sets", map[string]string{"SLUICE_FSYNC_INTERVAL": "250ms", "SLUICE_MAX_STREAM_SIZE": "1073741824", "SLUICE_LOG_LEVEL": "debug"}, nil,
			func(t *testing.T, c *serveCmd) {
				if c.FsyncInterval != 250*time.Millisecond || c.MaxStreamSize != 1<<30 || c.LogLevel.String() != "DEBUG" {
					t.Errorf("from env: fsync %v, max size %d, level %v", c.FsyncInterval, c.MaxStreamSize, c.LogLevel)
				}
			}},
		{"flag overrides env", map[string]string{"SLUICE_ADDR": "127.0.0.1:1111", "SLUICE_SHUTDOWN_GRACE": "3s"}, []string{"--addr", "127.0.0.1:2222"},
			func(t *testing.T, c *serveCmd) {
				if c.Addr != "127.0.0.1:2222" {
					t.Errorf("addr = %q, want the flag's 127.0.0.1:2222", c.Addr)
				}
				if c.ShutdownGrace != 3*time.Second {
					t.Errorf("shutdown grace = %v, want the env's 3s", c.ShutdownGrace)
				}
			}},
		{"PORT sets default addr", map[string]string{"PORT": "5123"}, nil, func(t *testing.T, c *serveCmd) {
			if c.Addr != ":5123" {
				t.Errorf("addr = %q, want :5123", c.Addr)
			}
		}},
		{"SLUICE_ADDR over PORT", map[string]string{"PORT": "5123", "SLUICE_ADDR": "127.0.0.1:7000"}, nil, func(t *testing.T, c *serveCmd) {
			if c.Addr != "127.0.0.1:7000" {
				t.Errorf("addr = %q, want SLUICE_ADDR's", c.Addr)
			}
		}},
		{"flag over PORT", map[string]string{"PORT": "5123"}, []string{"--addr=:6000"}, func(t *testing.T, c *serveCmd) {
			if c.Addr != ":6000" {
				t.Errorf("addr = %q, want the flag's", c.Addr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := parseArgs(t, append([]string{"serve"}, tt.args...)...)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			tt.check(t, &c.Serve)
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
		stdout string
		stderr string
	}{
		{[]string{"version"}, nil, 0, "sluice", ""},
		{[]string{"serve", "--help"}, nil, 0, "SLUICE_SHUTDOWN_GRACE", ""},
		{[]string{"bogus"}, nil, 2, "", `unexpected argument bogus`},
		{[]string{"serve"}, []string{"SLUICE_SSE_KEEPALIVE=banana"}, 2, "", "SLUICE_SSE_KEEPALIVE"},
	}
	for _, tt := range tests {
		// Were the mistake accepted, the server would run: the context bounds it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sluiceBin, tt.args...)
		cmd.Env = append(childEnv(), append([]string{"SLUICE_ADDR=127.0.0.1:0"}, tt.env...)...)
		cmd.Dir = t.TempDir()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("%v %v: exit %d, stdout %.200q, stderr %q; want exit %d, %q on stdout, %q on stderr", tt.env, tt.args, code,
				stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}
