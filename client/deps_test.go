package client

import (
	"errors"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// serverOnly are packages that only the server needs: the client must not link them,
// whichever package would bring them in. The client is a package of its own so that a
// program that publishes or follows does not carry the server.
var serverOnly = []string{"github.com/sluicehq/sluice/http", "github.com/gobwas/ws", "github.com/coder/websocket"}

// allowed are the packages outside the standard library that the client may link beyond
// the root package and the root package's own dependencies. Adding one is a decision.
var allowed = map[string]bool{"github.com/sluicehq/sluice/client": true}

// TestDependencies proves that the client links only the standard library and the root
// package (with whatever the root package itself links, which is its business): not the
// server, not WebSocket, and not Prometheus through the client's own imports.
func TestDependencies(t *testing.T) {
	root := deps(t, "github.com/sluicehq/sluice")
	client := deps(t, "github.com/sluicehq/sluice/client")
	for _, path := range slices.Sorted(maps.Keys(client)) {
		standard := client[path]
		_, viaRoot := root[path]
		switch {
		case under(path, serverOnly...):
			t.Errorf("the client links %s, which only the server needs", path)
		case standard || viaRoot || allowed[path]:
		case under(path, "github.com/prometheus"):
			t.Errorf("the client links %s, and not through the root package", path)
		default:
			t.Errorf("the client links %s, outside the standard library and the root package", path)
		}
	}
}

// under reports whether the package path is one of prefixes or inside one of them.
func under(path string, prefixes ...string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// deps returns the packages that pkg's non-test code links, pkg included, each with
// whether it is in the standard library. It asks go list, so that the answer is the
// build's own: with its build constraints and the module's versions.
func deps(t *testing.T, pkg string) map[string]bool {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg).Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
	} else if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	m := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		path, standard, _ := strings.Cut(strings.TrimSpace(line), " ")
		m[path] = standard == "true"
	}
	if _, ok := m[pkg]; !ok {
		t.Fatalf("go list -deps %s did not list the package itself:\n%s", pkg, out)
	}
	return m
}
