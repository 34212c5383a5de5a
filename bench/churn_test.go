package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestChurn runs followers of every transport that connect, read a little and vanish,
// half by a clean close and half by a reset, for a short while: every cycle works, the
// bytes read are the stream's, and the server lets every follower go (no leak).
func TestChurn(t *testing.T) {
	url := startServer(t, nil)
	rep, err := Churn(context.Background(), ChurnConfig{URL: url, Concurrency: 6, Duration: 1500 * time.Millisecond,
		Hold: 300 * time.Millisecond, ReadBytes: 300, Rate: 50, Settle: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Churn
	if !rep.OK() || c.Errors != 0 || c.BadData != 0 || len(c.Leaks) != 0 {
		t.Fatalf("churn not clean: %+v, producer errors %v", c, rep.Producers.Errors)
	}
	if c.Clean < 3 || c.Resets < 3 || c.Cycles != c.Clean+c.Resets || c.Connect.Count < uint64(c.Cycles) {
		t.Errorf("cycles %d (clean %d, resets %d), connects %d", c.Cycles, c.Clean, c.Resets, c.Connect.Count)
	}
	s := rep.Server
	if !s.Before.OK || !s.After.OK || s.After.Followers != 0 || s.Peak.Followers < 1 {
		t.Errorf("server samples: before %+v, peak %+v, after %+v", s.Before, s.Peak, s.After)
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	if !strings.Contains(out.String(), "clean closes") || !strings.Contains(out.String(), "goroutines") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestChurnReportsLeaks checks the judgement: followers or goroutines that do not come
// back down are a leak, and the report is not OK.
func TestChurnReportsLeaks(t *testing.T) {
	c := &ChurnReport{}
	if !c.OK() {
		t.Fatal("a clean churn is not OK")
	}
	c.Leaks = []string{"the server counts 3 followers, 0 before"}
	r := &Report{Churn: c}
	if c.OK() || r.OK() {
		t.Error("a leak is OK")
	}
}
