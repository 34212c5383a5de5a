package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// Fanout runs one stream with n followers for each n in followers, in turn, pausing
// between runs so that the server settles; cfg.Streams and cfg.Followers are ignored.
// The reports so far are returned with an error that stopped the sweep.
func Fanout(ctx context.Context, cfg Config, followers []int, pause time.Duration) ([]*Report, error) {
	if len(followers) == 0 {
		followers = []int{cfg.Followers}
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = "bench/" + newRunID()
	}
	var reps []*Report
	for i, n := range followers {
		if i > 0 {
			if !backoff.Sleep(ctx, pause) {
				return reps, ctx.Err()
			}
		}
		c := cfg
		c.Streams, c.Followers = 1, n
		c.KeyPrefix = fmt.Sprintf("%s/fanout-%d", prefix, n)
		rep, err := Run(ctx, c)
		if err != nil {
			return reps, fmt.Errorf("%d followers: %w", n, err)
		}
		rep.Mode = "fanout"
		reps = append(reps, rep)
	}
	return reps, nil
}

// Streams runs cfg.Streams streams with cfg.Followers followers each, all at once.
func Streams(ctx context.Context, cfg Config) (*Report, error) {
	rep, err := Run(ctx, cfg)
	if rep != nil {
		rep.Mode = "streams"
	}
	return rep, err
}

// Ingest runs one producer as fast as the server takes its bytes, with cfg.Followers
// followers that must keep up: 1 GiB of 1 KiB lines over raw followers (SSE where the
// protocol has no raw ones) unless cfg says otherwise. The report's throughput is the
// figure to read. Where the protocol takes messages (Nchan, Durable Streams), each line
// is one request, sent once the one before is answered.
func Ingest(ctx context.Context, cfg Config) (*Report, error) {
	cfg.Streams, cfg.Rate = 1, 0
	if cfg.Bytes == 0 && cfg.Lines == 0 && cfg.Duration == 0 {
		cfg.Bytes = 1 << 30
	}
	if cfg.LineSize == 0 {
		cfg.LineSize = 1 << 10
	}
	if proto, _, _ := Resolve(cfg.Target, cfg.Protocol, ""); cfg.Transport == "" && proto == ProtocolBusl {
		cfg.Transport = "raw"
	}
	rep, err := Run(ctx, cfg)
	if rep != nil {
		rep.Mode = "ingest"
	}
	return rep, err
}
