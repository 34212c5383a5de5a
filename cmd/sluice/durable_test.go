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
// long-poll timeout, which the suite needs): one instance on local disk, and two in
// cluster mode on a three-node JetStream cluster behind nginx, which sends each request
// to either. Every test must pass. With SLUICE_CONFORMANCE_REPORT set, it writes the
// counts there (.ci/run prints them).
func TestDurableStreamsConformance(t *testing.T) {
	if _, err := os.Stat(filepath.Join(conformanceDir, "node_modules", "@durable-streams", "server-conformance-tests")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the conformance suite is not installed: npm ci --prefix conformance (.ci/run does): %v", err)
		}
		t.Skip("the conformance suite is not installed: npm ci --prefix conformance (.ci/run does)")
	}
	flags := []string{"--long-poll-timeout", "500ms", "--log-level", "warn"}
	var summary strings.Builder
	t.Run("local", func(t *testing.T) {
		p := startSluice(t, freeAddr(t), t.TempDir(), flags...)
		summary.WriteString(conformance(t, "local disk", p.url))
	})
	t.Run("cluster", func(t *testing.T) {
		nc := startNATS(t)
		var upstreams []string
		for range 2 {
			upstreams = append(upstreams, startSluice(t, freeAddr(t), t.TempDir(), append(flags, "--nats", nc.URLs())...).addr)
		}
		summary.WriteString(conformance(t, "cluster, 2 instances behind nginx", startNginx(t, upstreams)))
	})
	if name := os.Getenv("SLUICE_CONFORMANCE_REPORT"); name != "" {
		os.WriteFile(name, []byte(summary.String()), 0o644)
	}
}

// conformance runs the suite against the server at url and fails t unless every test
// passes. It returns a line of counts.
func conformance(t *testing.T, what, url string) string {
	report := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npx", "vitest", "run", "conformance.test.mjs", "--reporter=json", "--outputFile="+report)
	cmd.Dir = conformanceDir
	cmd.Env = append(os.Environ(), "DS_URL="+url, "DS_LONG_POLL_MS=500", "CI=true")
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
	summary := fmt.Sprintf("Durable Streams conformance (0.3.6), %s: %d passed, %d failed, %d not run (opt-in)\n", what, res.Passed, res.Failed, res.Pending)
	t.Log(summary)
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
	return summary
}
