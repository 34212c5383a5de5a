package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompletionAnswers proves that the real binary answers a shell's completion
// requests, the way bash's complete -C (and the scripts) ask: with the line typed so far
// in COMP_LINE, it prints the commands, subcommands, flags, enum values and files that
// complete the last word, one a line, and exits 0.
func TestCompletionAnswers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string][]string{
		"sluice ser":                       {"serve"},
		"sluice c":                         {"completion"},
		"sluice bench ":                    {"churn", "fanout", "ingest", "streams"},
		"sluice serve --data":              {"--data-dir"},
		"sluice serve --log-format ":       {"json", "text"},
		"sluice tail --no-fol":             {"--no-follow"},
		"sluice run --merge":               {"--merge-output"},
		"sluice completion ":               {"bash", "fish", "zsh"},
		"sluice bench fanout --transport ": {"long-poll", "mix", "raw", "sse", "websocket"},
		"sluice bench streams --protocol ": {"busl", "durable-streams"},
		"sluice bench ingest --target ":    {"durable-streams", "nchan", "sluice"},
		"sluice push http://h/s no":        {"notes.txt"},
	} {
		cmd := sluiceCmd(t.Context(), dir)
		cmd.Env = append(cmd.Env, "COMP_LINE="+line)
		out, err := cmd.Output()
		got := strings.Fields(string(out))
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("COMP_LINE=%q: %v, %q; want %q", line, err, got, want)
		}
	}
}

// TestCompletionScripts proves sluice completion SHELL: a script for bash, zsh and fish
// that each shell reads without error (checked with the shells found here), that
// registers sluice's completion in bash, and with which fish completes a command line
// (fish alone can be asked without a terminal); an unknown shell is a usage error.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o default -o bashdefault -C sluice sluice\n",
		"zsh":  "bashcompinit",
		"fish": `complete -f -c sluice -a "(__complete_sluice)"`,
	} {
		r := runSluice(t, bound, nil, t.TempDir(), "completion", shell)
		if r.code != 0 || !strings.Contains(string(r.stdout), want) {
			t.Errorf("completion %s: exit %d, %q; want %q in it", shell, r.code, r.stdout, want)
			continue
		}
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("no %s here to read its script", shell)
			continue
		}
		check := exec.Command(shell, "-n")
		check.Stdin = bytes.NewReader(r.stdout)
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, out)
		}
	}
	if _, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command("bash", "-c", `source <("$0" completion bash) && complete -p sluice`, sluiceBin)
		out, err := cmd.Output()
		if s := string(out); err != nil || !strings.HasPrefix(s, "complete ") || !strings.Contains(s, "-o default") ||
			!strings.HasSuffix(s, " -C sluice sluice\n") && !strings.HasSuffix(s, " -C 'sluice' sluice\n") {
			t.Errorf("bash with the script: %v, complete -p %q", err, out)
		}
	}
	if _, err := exec.LookPath("fish"); err == nil {
		cmd := exec.Command("fish", "-c", `sluice completion fish | source; complete -C "sluice serve --log-f"`)
		cmd.Env = append(childEnv(), "PATH="+filepath.Dir(sluiceBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		if out, err := cmd.Output(); err != nil || strings.TrimSpace(string(out)) != "--log-format" {
			t.Errorf("fish with the script: %v, completions %q; want --log-format", err, out)
		}
	}
	if r := runSluice(t, bound, nil, t.TempDir(), "completion", "tcsh"); r.code != 2 || !strings.Contains(string(r.stderr), "bash") {
		t.Errorf("completion tcsh: exit %d, stderr %q; want 2 naming the shells", r.code, r.stderr)
	}
}
