package main

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestReadmeNamesEveryFlag: every flag of every command but bench is in README, so that
// the reference cannot fall behind the code (README sends readers of the load generator
// to `sluice bench MODE --help`).
func TestReadmeNamesEveryFlag(t *testing.T) {
	p, err := newParser(&cli{}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		if n.Name == "bench" {
			return
		}
		for _, f := range n.Flags {
			name := "--" + f.Name
			if f.Name == "help" || f.Name == "version" || strings.Contains(string(readme), "`"+name) {
				continue
			}
			missing = append(missing, n.Path()+" "+name)
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(p.Model.Node)
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("flags not in README.md:\n%s", strings.Join(missing, "\n"))
	}
}
