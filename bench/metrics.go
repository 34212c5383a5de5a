package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is the server's state as its /metrics tells it, so that it works against a
// server anywhere: resident memory, CPU time, goroutines, open files and followers. With
// a server process given (Config.ServerPID), resident memory, CPU time and open files
// come from /proc instead, for that process and its children.
type Sample struct {
	OK         bool      `json:"ok"`      // false: the server's figures could not be read
	Metrics    bool      `json:"metrics"` // /metrics was read: goroutines, heap and followers are known
	Time       time.Time `json:"time"`
	RSSBytes   float64   `json:"rss_bytes"`
	CPUSeconds float64   `json:"cpu_seconds"`
	Goroutines float64   `json:"goroutines"`
	OpenFDs    float64   `json:"open_fds"`
	HeapBytes  float64   `json:"heap_inuse_bytes"`
	Followers  float64   `json:"followers"`
}

// metricNames maps the exposition names read to the Sample fields they fill.
var metricNames = map[string]func(*Sample) *float64{
	"process_resident_memory_bytes": func(s *Sample) *float64 { return &s.RSSBytes },
	"process_cpu_seconds_total":     func(s *Sample) *float64 { return &s.CPUSeconds },
	"go_goroutines":                 func(s *Sample) *float64 { return &s.Goroutines },
	"process_open_fds":              func(s *Sample) *float64 { return &s.OpenFDs },
	"go_memstats_heap_inuse_bytes":  func(s *Sample) *float64 { return &s.HeapBytes },
	"sluice_followers":              func(s *Sample) *float64 { return &s.Followers }, // summed over transports
}

// parseMetrics reads the Prometheus text format, summing series of the same name.
func parseMetrics(sc *bufio.Scanner) (Sample, error) {
	s := Sample{OK: true, Metrics: true, Time: time.Now()}
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		field, ok := metricNames[name]
		if !ok {
			continue
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				return s, fmt.Errorf("metrics: malformed line %q", line)
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest) // value, then an optional timestamp
		if len(f) == 0 {
			return s, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return s, fmt.Errorf("metrics: %q: %w", line, err)
		}
		*field(&s) += v
	}
	return s, sc.Err()
}

// scraper reads a server's /metrics (if url is not empty) and the figures of process
// pid from /proc (if pid is not 0).
type scraper struct {
	url    string
	client *http.Client
	pid    int
}

// scrape returns the server's state now; a failure gives a Sample that is not OK. With a
// pid, resident memory, CPU time and open files are those of /proc, or none at all.
func (s *scraper) scrape(ctx context.Context) Sample {
	smp := Sample{Time: time.Now()}
	if s.url != "" {
		smp = s.scrapeMetrics(ctx)
	}
	if s.pid == 0 {
		return smp
	}
	p, err := procSample(s.pid)
	if err != nil {
		return Sample{Time: time.Now()}
	}
	smp.OK, smp.Time = true, p.Time
	smp.RSSBytes, smp.CPUSeconds, smp.OpenFDs = p.RSSBytes, p.CPUSeconds, p.OpenFDs
	return smp
}

// scrapeMetrics reads /metrics.
func (s *scraper) scrapeMetrics(ctx context.Context) Sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return Sample{Time: time.Now()}
	}
	req.Header.Set("User-Agent", "sluice-bench")
	resp, err := s.client.Do(req)
	if err != nil {
		return Sample{Time: time.Now()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{Time: time.Now()}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	smp, err := parseMetrics(sc)
	if err != nil {
		return Sample{Time: time.Now()}
	}
	return smp
}

// sampler scrapes every interval while a run goes on and keeps the peaks.
type sampler struct {
	sc       *scraper
	interval time.Duration

	mu    sync.Mutex
	last  Sample
	peak  Sample // field-wise maxima
	n     int
	stop  context.CancelFunc
	ended chan struct{}
}

func startSampler(ctx context.Context, sc *scraper, interval time.Duration) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{sc: sc, interval: interval, stop: cancel, ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.add(sc.scrape(ctx))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) add(smp Sample) {
	if !smp.OK {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.n = smp, s.n+1
	p := &s.peak
	p.OK, p.Time = true, smp.Time
	p.RSSBytes = max(p.RSSBytes, smp.RSSBytes)
	p.CPUSeconds = max(p.CPUSeconds, smp.CPUSeconds)
	p.Goroutines = max(p.Goroutines, smp.Goroutines)
	p.OpenFDs = max(p.OpenFDs, smp.OpenFDs)
	p.HeapBytes = max(p.HeapBytes, smp.HeapBytes)
	p.Followers = max(p.Followers, smp.Followers)
}

// latest returns the last good sample.
func (s *sampler) latest() Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// finish stops sampling and returns the peaks.
func (s *sampler) finish() Sample {
	s.stop()
	<-s.ended
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// settle polls until the server is back to its state before: no more followers, and
// their goroutines and files gone (a few may come and go), for at most d, and returns
// the last sample.
func (s *scraper) settle(ctx context.Context, before Sample, d time.Duration) Sample {
	end := time.Now().Add(d)
	for {
		smp := s.scrape(ctx)
		settled := smp.Followers <= before.Followers && smp.Goroutines <= before.Goroutines+5 &&
			smp.OpenFDs <= before.OpenFDs+5
		if !smp.OK || settled || time.Now().After(end) || ctx.Err() != nil {
			return smp
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
