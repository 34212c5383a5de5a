package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	// The suite leaves most tests to vitest's default of 5 s; in cluster mode with -race
	// its property-based ones take 1-1.4 s here, and more than 5 s when the machine is busy.
	cmd := exec.CommandContext(ctx, "npx", "vitest", "run", "conformance.test.mjs", "--reporter=json", "--outputFile="+report, "--testTimeout=30000")
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

// TestKill9IdempotentProducer proves "an acknowledged append survives kill -9, and
// producer state is committed atomically with the data it guards": a producer appends
// numbered records (Producer-Id, -Epoch, -Seq) to a Durable Streams stream as fast as
// it can, the server is killed with SIGKILL among them, restarted on the same data,
// and the producer retries from its first unacknowledged record, the one in flight
// included: each retry is stored once (200) or found stored already (204), so the
// stream ends with every record once, in order. On local disk, and in cluster mode,
// where the producer retries through another instance.
func TestKill9IdempotentProducer(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		addr, dir := freeAddr(t), t.TempDir()
		srv := startSluice(t, addr, dir)
		killedProducer(t, srv, func() string { return startSluice(t, addr, dir).url })
	})
	t.Run("cluster", func(t *testing.T) {
		nc := startNATS(t)
		srv := startSluice(t, freeAddr(t), t.TempDir(), "--nats", nc.URLs())
		other := startSluice(t, freeAddr(t), t.TempDir(), "--nats", nc.URLs())
		killedProducer(t, srv, func() string { return other.url })
	})
}

// killedProducer runs the producer of TestKill9IdempotentProducer against srv, kills
// srv among its appends, and goes on through the server restart returns.
func killedProducer(t *testing.T, srv *proc, restart func() string) {
	c := newClient(t)
	c.Timeout = 5 * time.Second // an append to the killed server fails soon
	path := "/v1/stream/kill/producer"
	if r := do(t, c, http.MethodPut, srv.url+path, nil, "Content-Type", "text/plain"); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	record := func(i int) []byte { return fmt.Appendf(nil, "record %05d\n", i) }
	const n = 3000
	append := func(base string, i int) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(record(i)))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Producer-Id", "job-7")
		req.Header.Set("Producer-Epoch", "0")
		req.Header.Set("Producer-Seq", strconv.Itoa(i))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	killAt := 400 + int(time.Now().UnixNano()%1000)
	base, i, duplicates, restarted := srv.url, 0, 0, false
	for i < n {
		if i == killAt {
			go srv.cmd.Process.Kill() // among the appends: one may be in flight
		}
		status, err := append(base, i)
		switch {
		case err != nil && !restarted:
			<-srv.done
			base, restarted = restart(), true
			// The producer's state survived: the last acknowledged record, sent again, is
			// a duplicate. Then record i, whose fate is unknown, is retried.
			if status, err := append(base, i-1); err != nil || status != http.StatusNoContent {
				t.Fatalf("after the restart, the acknowledged record %d again: %d, %v; want 204", i-1, status, err)
			}
			continue
		case err != nil:
			t.Fatalf("append %d after the restart: %v", i, err)
		case status == http.StatusNoContent && restarted:
			duplicates++ // stored before the kill; its answer was lost
		case status != http.StatusOK:
			t.Fatalf("append %d: %d", i, status)
		}
		i++
	}
	if !restarted {
		t.Fatal("the server was never killed")
	}
	// Read with newClient's own timeout: in cluster mode, a read of the whole stream is
	// one JetStream request per stored append, 3,000 of them (3 s here with -race).
	r := do(t, newClient(t), http.MethodGet, base+path+"?offset=-1", nil)
	var want bytes.Buffer
	for i := range n {
		want.Write(record(i))
	}
	if !bytes.Equal(r.body, want.Bytes()) {
		t.Fatalf("after the kill and the retries: %d bytes, want the %d of %d records once each, in order", len(r.body), want.Len(), n)
	}
	t.Logf("killed at record %d; %d retries found their record stored already", killAt, duplicates)
}
