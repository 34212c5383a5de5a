package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestManPage proves sluice man: a manual page in roff that groff renders without a
// warning, with a section for every command holding its exit statuses and every flag
// with its environment variable, as --help has them.
func TestManPage(t *testing.T) {
	r := runSluice(t, bound, nil, t.TempDir(), "man")
	page := string(r.stdout)
	if r.code != 0 || len(r.stderr) != 0 || !strings.HasPrefix(page, ".nh\n.TH SLUICE 1") {
		t.Fatalf("exit %d, stderr %q, page %.200q", r.code, r.stderr, page)
	}
	text := page
	if _, err := exec.LookPath("groff"); err == nil {
		render := exec.Command("groff", "-man", "-Tutf8", "-ww", "-P-cbou")
		render.Stdin = strings.NewReader(page)
		var out, warnings bytes.Buffer
		render.Stdout, render.Stderr = &out, &warnings
		if err := render.Run(); err != nil || warnings.Len() != 0 {
			t.Fatalf("groff: %v\n%s", err, warnings.Bytes())
		}
		text = strings.Join(strings.Fields(out.String()), " ") // groff fills and hyphenates no words: .nh
	} else {
		t.Log("no groff here: the roff itself is checked")
	}
	for path, flags := range commands(t) {
		if !strings.Contains(text, "sluice "+path) {
			t.Errorf("no section for sluice %s", path)
		}
		for _, f := range flags {
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("sluice %s: --%s missing", path, f.Name)
			}
		}
	}
	if n := strings.Count(text, "Exit status:"); n < len(commands(t)) {
		t.Errorf("%d exit status sections for %d commands", n, len(commands(t)))
	}
	if !strings.Contains(text, "$SLUICE_DATA_DIR") || !strings.Contains(text, "$SLUICE_BENCH_RATE") {
		t.Error("the environment variables are missing")
	}
}
