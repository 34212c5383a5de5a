// Package deploy_test checks the ways to run Sluice that this repository ships: the
// container image (../Dockerfile), the systemd unit and the compose file. The machines
// that run the tests have no Docker engine and no systemd running, so each is checked as
// far as can be without: parsed with the tools' own parsers, the image's build command
// run as the Dockerfile has it, and the binary it makes run with the image's settings.
package deploy_test

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/modfile"
)

// root is the repository's root, where the image's build context is.
const root = ".."

// stage is a stage of the Dockerfile: its FROM and its instructions.
type stage struct {
	from, name string
	nodes      []*parser.Node
	env        []string // ARG defaults and ENV, as KEY=VALUE, in order
}

// find returns the instructions of the stage named cmd ("run", "env", ...).
func (s *stage) find(cmd string) []*parser.Node {
	var found []*parser.Node
	for _, n := range s.nodes {
		if strings.EqualFold(n.Value, cmd) {
			found = append(found, n)
		}
	}
	return found
}

// args are the arguments of an instruction.
func args(n *parser.Node) []string {
	var a []string
	for n = n.Next; n != nil; n = n.Next {
		a = append(a, n.Value)
	}
	return a
}

// dockerfile parses ../Dockerfile into its stages.
func dockerfile(t *testing.T) []*stage {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	var stages []*stage
	for _, n := range res.AST.Children {
		switch a := args(n); {
		case strings.EqualFold(n.Value, "from"):
			s := &stage{from: a[0]}
			if len(a) == 3 && strings.EqualFold(a[1], "as") {
				s.name = a[2]
			}
			stages = append(stages, s)
		case len(stages) == 0:
			t.Fatalf("Dockerfile: %s before FROM", n.Value)
		case strings.EqualFold(n.Value, "arg"):
			stages[len(stages)-1].env = append(stages[len(stages)-1].env, a[0])
		case strings.EqualFold(n.Value, "env"):
			for i := 0; i+1 < len(a); i += 3 { // key, value, "="
				stages[len(stages)-1].env = append(stages[len(stages)-1].env, a[i]+"="+a[i+1])
			}
		}
		if len(stages) > 0 {
			stages[len(stages)-1].nodes = append(stages[len(stages)-1].nodes, n)
		}
	}
	return stages
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  string
)

// imageBinary builds sluice as the image's builder does: its go build command line,
// word for word, with the stage's ARG and ENV values and those the command sets, in the
// build context; only -o is a directory of the test's. It is built once for the tests.
func imageBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var build *stage
		for _, s := range dockerfile(t) {
			if strings.HasPrefix(s.from, "golang:") {
				build = s
			}
		}
		if build == nil {
			buildErr = "no golang builder stage"
			return
		}
		var line string
		for _, run := range build.find("run") {
			if a := args(run); len(a) == 1 && strings.Contains(a[0], "go build") {
				line = a[0]
			}
		}
		words, err := shell.NewLex('\\').ProcessWords(line, shell.EnvsFromSlice(build.env))
		if err != nil || line == "" {
			buildErr = "no go build in the builder's RUN lines: " + line
			return
		}
		env := append(os.Environ(), build.env...)
		for len(words) > 0 && strings.Contains(words[0], "=") { // the command's own variables
			env, words = append(env, words[0]), words[1:]
		}
		dir, err := os.MkdirTemp("", "sluice-image-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		builtBin = filepath.Join(dir, "sluice")
		i := slices.Index(words, "-o")
		if words[0] != "go" || i < 0 || i+1 >= len(words) {
			buildErr = "not a go build -o command: " + line
			return
		}
		words[i+1] = builtBin
		cmd := exec.Command(words[0], words[1:]...)
		cmd.Dir, cmd.Env = root, env
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = "go build as in the Dockerfile: " + err.Error() + "\n" + string(out)
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// TestDockerfile proves the image definition: a golang builder of the Go version that
// go.mod asks for, whose go build makes a static binary (no cgo, no dynamic loader,
// -trimpath) that runs; a final stage on a static base with no shell, as a user that is
// not root, with the data directory a volume owned by that user and the port exposed;
// and a HEALTHCHECK that, run with the image's environment against the server that the
// image's command starts, says it is healthy.
func TestDockerfile(t *testing.T) {
	stages := dockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a builder and the image", len(stages))
	}
	build, image := stages[0], stages[1]
	checkGoVersion(t, build.from)
	bin := imageBinary(t)
	checkStatic(t, bin)
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "sluice devel\n") {
		t.Errorf("the image's sluice version: %v, %q; want the ARG VERSION default", err, out)
	}

	if !strings.HasPrefix(image.from, "gcr.io/distroless/static") && image.from != "scratch" {
		t.Errorf("the image is FROM %s, want a static base without a shell", image.from)
	}
	if user := image.find("user"); len(user) != 1 || slices.Contains([]string{"root", "0", "root:root", "0:0"}, args(user[0])[0]) {
		t.Errorf("%d USER lines, the last %q: want one, not root", len(user), user[len(user)-1].Original)
	}
	env := map[string]string{}
	for _, kv := range image.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	dataDir := env["SLUICE_DATA_DIR"]
	if vols := image.find("volume"); len(vols) != 1 || dataDir == "" || !slices.Contains(args(vols[0]), dataDir) {
		t.Errorf("VOLUME %v, SLUICE_DATA_DIR %q: want the data directory a volume", vols, dataDir)
	}
	chowned := false
	for _, c := range image.find("copy") {
		a := args(c)
		chowned = chowned || a[len(a)-1] == dataDir && slices.ContainsFunc(c.Flags, func(f string) bool { return strings.HasPrefix(f, "--chown=") })
	}
	if !chowned {
		t.Errorf("the data directory %s is not copied in with --chown: a new volume would be root's", dataDir)
	}
	_, port, _ := net.SplitHostPort(env["SLUICE_ADDR"])
	if ex := image.find("expose"); len(ex) != 1 || port == "" || args(ex[0])[0] != port {
		t.Errorf("EXPOSE %v, SLUICE_ADDR %q: want the port listened on exposed", ex, env["SLUICE_ADDR"])
	}
	checkHealthcheck(t, image, bin)
}

// checkGoVersion checks that the builder's image (golang:1.26) is of the Go release that
// go.mod's go line needs.
func checkGoVersion(t *testing.T, from string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil || mf.Go == nil {
		t.Fatalf("go.mod: %v", err)
	}
	tag := strings.TrimPrefix(from, "golang:")
	if want := strings.Join(strings.SplitN(mf.Go.Version, ".", 3)[:2], "."); tag != want && !strings.HasPrefix(tag, want+".") {
		t.Errorf("the builder is %s; go.mod needs Go %s", from, mf.Go.Version)
	}
}

// checkStatic checks that bin needs no dynamic loader nor shared library, and was built
// without cgo and with -trimpath.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary asks for a dynamic loader")
		}
	}
	if len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("built with CGO_ENABLED=%q, -trimpath=%q; want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
}

// checkHealthcheck runs the image's command (ENTRYPOINT and CMD) with its environment,
// but on a free port and a temporary data directory, then its HEALTHCHECK command the
// same way: it must succeed.
func checkHealthcheck(t *testing.T, image *stage, bin string) {
	t.Helper()
	hc := image.find("healthcheck")
	ep, cmdArgs := image.find("entrypoint"), image.find("cmd")
	if len(hc) != 1 || !hc[0].Attributes["json"] || len(ep) != 1 || len(cmdArgs) != 1 {
		t.Fatalf("want one HEALTHCHECK, ENTRYPOINT and CMD, in exec form: %v %v %v", hc, ep, cmdArgs)
	}
	check := args(hc[0])
	entry := args(ep[0])
	if check[0] != "CMD" || check[1] != entry[0] {
		t.Fatalf("HEALTHCHECK %q: want CMD and the image's binary %s", check, entry[0])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := append(os.Environ(), image.env...)
	env = append(env, "SLUICE_ADDR="+addr, "SLUICE_DATA_DIR="+t.TempDir())
	srv := exec.Command(bin, append(entry[1:], args(cmdArgs[0])...)...)
	srv.Env = env
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var last []byte
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		probe := exec.Command(bin, check[2:]...)
		probe.Env = env
		if last, err = probe.CombinedOutput(); err == nil {
			return
		}
	}
	t.Errorf("the HEALTHCHECK %q never succeeded against the image's server: %q", check[1:], last)
}

// compose is what TestComposeFile reads of deploy/docker-compose.yml.
type compose struct {
	Services map[string]struct {
		Image       string
		Build       struct{ Context, Dockerfile string }
		Command     []string
		Environment map[string]string
		Ports       []string
		DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
	}
}

// TestComposeFile proves the compose file: it parses (with its anchors and merges), has
// NATS with JetStream, MinIO and the job that makes the bucket, and two Sluice instances
// built from the Dockerfile, in cluster mode on that NATS, archiving to that bucket on
// that MinIO, on ports of their own; and every SLUICE_* variable it sets is one that
// sluice serve reads.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if !slices.Contains(c.Services["nats"].Command, "--jetstream") {
		t.Errorf("nats runs %q, without --jetstream", c.Services["nats"].Command)
	}
	help, err := exec.Command(imageBinary(t), "serve", "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]bool{}
	for _, name := range []string{"sluice-1", "sluice-2"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build %+v: %v", name, s.Build, err)
		}
		env := s.Environment
		if u, err := url.Parse(env["SLUICE_NATS"]); err != nil || u.Hostname() != "nats" {
			t.Errorf("%s: SLUICE_NATS %q, want the nats service", name, env["SLUICE_NATS"])
		}
		if u, err := url.Parse(env["SLUICE_S3_ENDPOINT"]); err != nil || u.Hostname() != "minio" {
			t.Errorf("%s: SLUICE_S3_ENDPOINT %q, want the minio service", name, env["SLUICE_S3_ENDPOINT"])
		}
		u, err := url.Parse(env["SLUICE_ARCHIVE"])
		if err != nil || u.Scheme != "s3" || !strings.Contains(strings.Join(c.Services["bucket"].Command, " "), "local/"+u.Host) {
			t.Errorf("%s: SLUICE_ARCHIVE %q, want a bucket that the bucket job makes", name, env["SLUICE_ARCHIVE"])
		}
		if s.DependsOn["bucket"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for the bucket", name)
		}
		for k := range env {
			if !bytes.Contains(help, []byte("$"+k+")")) && !bytes.Contains(help, []byte("$"+k+",")) {
				t.Errorf("%s: %s is not a variable of sluice serve", name, k)
			}
		}
		for _, p := range s.Ports {
			if ports[p] {
				t.Errorf("%s: port %s taken twice", name, p)
			}
			ports[p] = true
		}
	}
	if c.Services["sluice-1"].Environment["SLUICE_NATS_NAME"] == c.Services["sluice-2"].Environment["SLUICE_NATS_NAME"] {
		t.Error("both instances have one NATS connection name")
	}
}

// TestSystemdUnit proves deploy/sluice.service: the keys a hardened service needs, read
// with go-systemd's parser; and, where systemd-analyze is installed, that systemd finds
// nothing wrong with it (with ExecStart pointed at a real sluice) and rates its exposure
// "OK" (under 2.0 of 10).
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("sluice.service: %v", err)
	}
	got := map[string][]string{}
	for _, o := range opts {
		got[o.Section+"."+o.Name] = append(got[o.Section+"."+o.Name], o.Value)
	}
	for key, want := range map[string]string{
		"Service.ExecStart": "/usr/local/bin/sluice serve", "Service.DynamicUser": "yes",
		"Service.StateDirectory": "sluice", "Service.ProtectSystem": "strict", "Service.ProtectHome": "yes",
		"Service.PrivateTmp": "yes", "Service.NoNewPrivileges": "yes", "Service.CapabilityBoundingSet": "",
		"Service.KillSignal": "SIGTERM", "Install.WantedBy": "multi-user.target",
	} {
		if !slices.Contains(got[key], want) {
			t.Errorf("%s = %q, want %q", key, got[key], want)
		}
	}
	if env := strings.Join(got["Service.Environment"], " "); !strings.Contains(env, "SLUICE_DATA_DIR=/var/lib/sluice") {
		t.Errorf("Environment %q: want the data directory in the state directory, /var/lib/sluice", env)
	}
	if d, err := time.ParseDuration(strings.Join(got["Service.TimeoutStopSec"], "")); err != nil || d <= 25*time.Second {
		t.Errorf("TimeoutStopSec %q: want longer than the 25s graceful shutdown", got["Service.TimeoutStopSec"])
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("no systemd-analyze here")
		return
	}
	path := filepath.Join(t.TempDir(), "sluice.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte("/usr/local/bin/sluice"), []byte(imageBinary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=true", "--threshold=20", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out[max(0, len(out)-300):])
	}
}
