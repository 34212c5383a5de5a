package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/s3"
)

// archiveConfig is where sluice serve archives closed streams.
type archiveConfig struct {
	url                                string
	retention                          time.Duration
	endpoint, region                   string
	pathStyle                          bool
	accessKey, secretKey, sessionToken string
}

func archiveFlags(fs *flag.FlagSet, c *archiveConfig) {
	fs.StringVar(&c.url, "archive", "", "`where` closed streams are archived: file:///path, s3://bucket/prefix, or off (default file://<data-dir>/archive)")
	fs.DurationVar(&c.retention, "archive-retention", time.Hour, "how long a stream's live copy stays after its archive is confirmed (`time`; 0s removes it at once)")
	fs.StringVar(&c.endpoint, "s3-endpoint", "", "S3 endpoint `URL` (default AWS S3), e.g. https://ACCOUNT.r2.cloudflarestorage.com or http://127.0.0.1:9000")
	fs.StringVar(&c.region, "s3-region", "", "S3 `region` (default $AWS_REGION, else found by the client; auto for R2)")
	fs.BoolVar(&c.pathStyle, "s3-path-style", false, "address buckets as ENDPOINT/BUCKET (MinIO and most self-hosted services)")
	fs.StringVar(&c.accessKey, "s3-access-key", "", "S3 access `key` (default $AWS_ACCESS_KEY_ID, ~/.aws/credentials or the IAM role)")
	fs.StringVar(&c.secretKey, "s3-secret-key", "", "S3 secret `key` (default $AWS_SECRET_ACCESS_KEY)")
	fs.StringVar(&c.sessionToken, "s3-session-token", "", "S3 session `token` (default $AWS_SESSION_TOKEN)")
}

// open returns the configured archive, or nil when archiving is off.
func (c *archiveConfig) open(dataDir string) (sluice.Archive, error) {
	u := c.url
	switch {
	case u == "off":
		return nil, nil
	case u == "":
		return file.OpenArchive(filepath.Join(dataDir, "archive"))
	case strings.HasPrefix(u, "file://"):
		dir := strings.TrimPrefix(u, "file://")
		if dir == "" {
			return nil, usageError{fmt.Errorf("--archive %q: want file:///path", u)}
		}
		return file.OpenArchive(dir)
	case strings.HasPrefix(u, "s3://"):
		bucket, prefix, err := s3.ParseURL(u)
		if err != nil {
			return nil, usageError{err}
		}
		region := c.region
		if region == "" {
			region = os.Getenv("AWS_REGION")
		}
		return s3.New(s3.Config{
			Bucket: bucket, Prefix: prefix,
			Endpoint: c.endpoint, Region: region, PathStyle: c.pathStyle,
			AccessKey: c.accessKey, SecretKey: c.secretKey, SessionToken: c.sessionToken,
		})
	}
	return nil, usageError{fmt.Errorf("--archive %q: want file:///path, s3://bucket/prefix or off", u)}
}

// runArchiver runs a until the returned stop is called; stop waits for it to end.
func runArchiver(a *sluice.Archiver, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			log.Error("archiver stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
