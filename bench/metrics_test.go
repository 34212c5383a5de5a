package bench

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestParseMetrics reads the Prometheus text format: comments skipped, labelled series
// of one name summed (sluice_followers by transport), timestamps and other metrics
// ignored, exponent notation understood.
func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
go_goroutines_other 7
process_resident_memory_bytes 1.2345e+07
process_cpu_seconds_total 3.25 1700000000000
process_open_fds 17
go_memstats_heap_inuse_bytes 4096
sluice_followers{transport="raw"} 3
sluice_followers{transport="sse",note="a}b"} 5
sluice_followers{transport="websocket"} 0
sluice_followers_total 99
`
	s, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{OK: true, Metrics: true, RSSBytes: 12345000, CPUSeconds: 3.25, Goroutines: 42, OpenFDs: 17, HeapBytes: 4096, Followers: 8}
	s.Time = time.Time{}
	if s != want {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	if _, err := parseMetrics(bufio.NewScanner(strings.NewReader("go_goroutines many\n"))); err == nil {
		t.Error("a value that is not a number was accepted")
	}
}

// TestScrapeRealServer reads a real server's /metrics: the process collectors are
// there; a URL without metrics gives a sample marked not OK, not an error.
func TestScrapeRealServer(t *testing.T) {
	url := startServer(t, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	s := (&scraper{url: url + "/metrics", client: c}).scrape(context.Background())
	if !s.OK || s.Goroutines < 1 || s.RSSBytes < 1<<20 || s.CPUSeconds <= 0 || s.OpenFDs < 1 {
		t.Errorf("sample %+v", s)
	}
	if s := (&scraper{url: url + "/nothing", client: c}).scrape(context.Background()); s.OK {
		t.Errorf("a 404 gave an OK sample: %+v", s)
	}
}
