package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceDir holds the Durable Streams conformance suite, pinned in its
// package.json and package-lock.json (npm ci --prefix conformance, which .ci/run does).
var conformanceDir = filepath.Join("..", "..", "conformance")

// conformanceTests is how many tests of the suite (0.3.6) run unless opted into: all
// 338 but the 6 of "Reserved subscription APIs".
const conformanceTests = 332

// TestDurableStreamsConformance runs the whole Durable Streams server conformance
// suite, no test filtered out, against `sluice serve` on loopback (with a short
// long-poll timeout, which the suite needs), and requires every test to pass. With
// SLUICE_CONFORMANCE_REPORT set, it writes the counts there (.ci/run prints them).
func TestDurableStreamsConformance(t *testing.T) {
	if _, err := os.Stat(filepath.Join(conformanceDir, "node_modules", "@durable-streams", "server-conformance-tests")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the conformance suite is not installed: npm ci --prefix conformance (.ci/run does): %v", err)
		}
		t.Skip("the conformance suite is not installed: npm ci --prefix conformance (.ci/run does)")
	}
	p := startSluice(t, freeAddr(t), t.TempDir(), "--long-poll-timeout", "500ms", "--log-level", "warn")
	report := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npx", "vitest", "run", "conformance.test.mjs", "--reporter=json", "--outputFile="+report)
	cmd.Dir = conformanceDir
	cmd.Env = append(os.Environ(), "DS_URL="+p.url, "DS_LONG_POLL_MS=500", "CI=true")
	out, err := cmd.CombinedOutput()
	var res struct {
		Passed  int `json:"numPassedTests"`
		Failed  int `json:"numFailedTests"`
		Pending int `json:"numPendingTests"`
		Files   []struct {
			Tests []struct {
				Name     string   `json:"fullName"`
				Status   string   `json:"status"`
				Failures []string `json:"failureMessages"`
			} `json:"assertionResults"`
		} `json:"testResults"`
	}
	b, rerr := os.ReadFile(report)
	if rerr != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("the suite left no report (%v; vitest: %v):\n%s", rerr, err, out)
	}
	summary := fmt.Sprintf("Durable Streams conformance (0.3.6): %d passed, %d failed, %d not run (opt-in)\n", res.Passed, res.Failed, res.Pending)
	t.Log(summary)
	if name := os.Getenv("SLUICE_CONFORMANCE_REPORT"); name != "" {
		os.WriteFile(name, []byte(summary), 0o644)
	}
	for _, f := range res.Files {
		for _, tc := range f.Tests {
			if tc.Status == "failed" {
				first, _, _ := strings.Cut(strings.Join(tc.Failures, "\n"), "\n")
				t.Errorf("failed: %s: %s", tc.Name, first)
			}
		}
	}
	if res.Passed != conformanceTests || res.Failed != 0 {
		t.Errorf("%d of the suite's %d tests passed, %d failed; want all of them", res.Passed, conformanceTests, res.Failed)
	}
}
