//go:build unix

package main

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/bench"
	"github.com/sluicehq/sluice/internal/nginxtest"
)

// TestBenchNchan runs sluice bench streams and ingest with --target nchan against real
// Nchan (nginx with the shipped deploy/nchan-bench.conf): every follower of every
// channel complete, ingest's followers SSE by default there, server figures from /proc.
func TestBenchNchan(t *testing.T) {
	url, pid := nginxtest.StartNchan(t, "../../deploy/nchan-bench.conf")
	for _, tc := range []struct {
		args             []string
		mode, transport  string
		complete         int
		lines, latencies int64
	}{
		{[]string{"streams", "--streams", "3", "--followers", "4", "--lines", "20", "--rate", "100"}, "streams", "sse", 12, 60, 240},
		{[]string{"ingest", "--bytes", "32KiB", "--followers", "2"}, "ingest", "sse", 2, 32, 64},
	} {
		args := append(tc.args, url, "--target", "nchan", "--server-pid", strconv.Itoa(pid), "--idle-wait", "50ms", "--json")
		out, stderr, err := runBench(t, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s\n%s", tc.mode, err, out, stderr)
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: not a JSON report: %v\n%s", tc.mode, err, out)
		}
		if rep.Mode != tc.mode || rep.Target != "nchan" || rep.Transport != tc.transport || rep.Complete != tc.complete ||
			rep.Producers.Lines != tc.lines || int64(rep.Latency.Count) != tc.latencies || rep.Server.PID != pid || !rep.Server.Idle.OK {
			t.Errorf("%s: mode %q, target %q, transport %q, %d complete, %d lines, %d latencies, server %+v",
				tc.mode, rep.Mode, rep.Target, rep.Transport, rep.Complete, rep.Producers.Lines, rep.Latency.Count, rep.Server.Idle)
		}
	}
}
