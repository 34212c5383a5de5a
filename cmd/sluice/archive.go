package main

import (
	"context"
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

// archiveFlags are where sluice serve archives closed streams.
type archiveFlags struct {
	URL          string        `name:"archive" placeholder:"WHERE" help:"Where closed streams are archived: file:///path, s3://bucket/prefix, or off (default file://<data-dir>/archive)."`
	Retention    time.Duration `name:"archive-retention" default:"1h" placeholder:"TIME" help:"How long a stream's live copy stays after its archive is confirmed; 0s removes it at once."`
	MaxAge       time.Duration `name:"archive-max-age" default:"0s" placeholder:"TIME" help:"Purge archived streams (the archived object with them) once their archive is this old, e.g. 720h; 0 keeps them forever."`
	Endpoint     string        `name:"s3-endpoint" placeholder:"URL" help:"S3 endpoint URL (default AWS S3), e.g. https://ACCOUNT.r2.cloudflarestorage.com or http://127.0.0.1:9000."`
	Region       string        `name:"s3-region" placeholder:"REGION" help:"S3 region (default $$AWS_REGION, else found by the client; auto for R2)."`
	PathStyle    bool          `name:"s3-path-style" help:"Address buckets as ENDPOINT/BUCKET (MinIO and most self-hosted services)."`
	AccessKey    string        `name:"s3-access-key" placeholder:"KEY" help:"S3 access key (default $$AWS_ACCESS_KEY_ID, ~/.aws/credentials or the IAM role)."`
	SecretKey    string        `name:"s3-secret-key" placeholder:"KEY" help:"S3 secret key (default $$AWS_SECRET_ACCESS_KEY)."`
	SessionToken string        `name:"s3-session-token" placeholder:"TOKEN" help:"S3 session token (default $$AWS_SESSION_TOKEN)."`
}

// open returns the configured archive, or nil when archiving is off.
func (c *archiveFlags) open(dataDir string) (sluice.Archive, error) {
	u := c.URL
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
		region := c.Region
		if region == "" {
			region = os.Getenv("AWS_REGION")
		}
		return s3.New(s3.Config{
			Bucket: bucket, Prefix: prefix,
			Endpoint: c.Endpoint, Region: region, PathStyle: c.PathStyle,
			AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken,
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
