package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// healthCmd is sluice health: a probe of a server's health endpoint, for a container's
// HEALTHCHECK, where the image has no shell and no curl.
type healthCmd struct {
	Timeout time.Duration `default:"5s" placeholder:"TIME" help:"Longest time to wait for the answer."`
	URL     string        `arg:"" default:"${health_url}" help:"The health endpoint: http://127.0.0.1 and the port of --addr (SLUICE_ADDR, PORT), then /health, by default."`
}

func (healthCmd) Help() string {
	return `Asks URL (a server's /health, /healthz or /readyz) and exits 0 if it answers 2xx. As the command of a container's HEALTHCHECK, with no URL it asks the server that sluice serve would start with the same environment.

Exit status:
  0    the server answered 2xx
  1    it answered something else, or did not answer within --timeout
  2    bad flags or arguments
  7    it could not be connected to

Examples:
  sluice health
  sluice health http://127.0.0.1:8080/readyz`
}

// defaultHealthURL is the /health of the server sluice serve would start: on loopback, at
// the port of SLUICE_ADDR, or of PORT, or 8080.
func defaultHealthURL() string {
	addr := os.Getenv("SLUICE_ADDR")
	if addr == "" {
		addr = defaultAddr()
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		port = "8080"
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/health"
}

func (c *healthCmd) Run(ctx context.Context, con *console) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	sc := newScrubber(c.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return usageError{fmt.Errorf("health: %w", err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sc.failure(err, "health %s: %v", sc.url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("health %s: %s", sc.url, resp.Status)
	}
	return nil
}
