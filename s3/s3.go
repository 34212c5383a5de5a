// Package s3 is a sluice.Archive in an S3-compatible bucket (AWS S3, Cloudflare R2,
// MinIO, versitygw...), through minio-go.
//
// The object of a stream is <prefix><key>.log and holds exactly the stream's bytes, so
// any S3 tool reads it. Keys are already restricted to segments of [A-Za-z0-9._~-]
// joined by '/', all safe in an object name; the fixed suffix keeps the mapping one to
// one. Raw keys (not hashes, as the file and NATS stores use) are what lets an operator
// find a stream's object with any S3 tool; whoever may list the bucket sees the keys.
// On gateways that map '/' to directories, stream "a" (a.log) and stream "a.log/b"
// (a.log/b.log) cannot both be archived.
//
// Uploads stream: PutObject with a known size reads the stream one part (PartSize) at a
// time into a single reused buffer and uploads parts in turn, so an upload holds about
// one part in memory whatever the stream's size. A failed multipart upload is aborted by
// minio-go; Put also aborts any incomplete upload of the object left by a crash before it
// starts. Every request has timeouts (dial, TLS, response headers) and minio-go retries
// transient errors (5xx, resets) a few times; the caller retries beyond that.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicehq/sluice"
)

// Config locates a bucket and says how to reach it.
type Config struct {
	// Bucket, and Prefix put before every object name (e.g. "logs/"; may be empty).
	Bucket, Prefix string
	// Endpoint is the service's URL, e.g. https://s3.us-east-1.amazonaws.com,
	// https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000; a bare host
	// means https. Empty means AWS S3 (s3.amazonaws.com).
	Endpoint string
	// Region is the bucket's region; empty lets the client find it ("auto" for R2).
	Region string
	// PathStyle addresses the bucket as endpoint/bucket instead of bucket.endpoint, as
	// MinIO and most self-hosted services want.
	PathStyle bool
	// AccessKey, SecretKey and SessionToken are static credentials; when AccessKey is
	// empty they come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
	// ~/.aws/credentials, or the instance's IAM role, in that order.
	AccessKey, SecretKey, SessionToken string
	// PartSize is the size of one part of a multipart upload (16 MiB): an upload holds
	// about one part in memory.
	PartSize uint64
	// MaxRetries bounds minio-go's own retries of one request (10); the Archiver retries
	// the whole upload beyond them.
	MaxRetries int
	// Transport, if set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// DefaultPartSize is the default Config.PartSize.
const DefaultPartSize = 16 << 20

// Archive is a bucket of archived streams.
type Archive struct {
	client *minio.Client
	cfg    Config
}

var _ sluice.Archive = (*Archive)(nil)

// ParseURL splits s3://bucket/prefix into a bucket and a prefix ending in '/' (or empty).
func ParseURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("archive %q: want s3://bucket/prefix", s)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	return u.Host, prefix, nil
}

// New returns the Archive of cfg. It makes no request.
func New(cfg Config) (*Archive, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		e := cfg.Endpoint
		if !strings.Contains(e, "://") {
			e = "https://" + e
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("s3: endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("s3: %w", err)
		}
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.ResponseHeaderTimeout = time.Minute
		tr = t
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &Archive{client: c, cfg: cfg}, nil
}

// ObjectName is the name of the object of key.
func (a *Archive) ObjectName(key string) string { return a.cfg.Prefix + key + ".log" }

// Put uploads size bytes from r as the object of key.
func (a *Archive) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	name := a.ObjectName(key)
	// Parts of an upload a crash left behind cost storage until aborted; best effort.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	a.client.RemoveIncompleteUpload(actx, a.cfg.Bucket, name)
	cancel()
	info, err := a.client.PutObject(ctx, a.cfg.Bucket, name, r, size, minio.PutObjectOptions{
		PartSize:    a.cfg.PartSize,
		NumThreads:  1,
		ContentType: "text/plain; charset=utf-8",
	})
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", name, err)
	}
	if info.Size != size {
		return fmt.Errorf("s3 put %s: stored %d bytes of %d", name, info.Size, size)
	}
	return nil
}

// Open reads the object from off on with one ranged GET.
func (a *Archive) Open(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
	opts := minio.GetObjectOptions{}
	if off > 0 {
		if err := opts.SetRange(off, 0); err != nil {
			return nil, err
		}
	}
	obj, err := a.client.GetObject(ctx, a.cfg.Bucket, a.ObjectName(key), opts)
	if err != nil {
		return nil, a.err(key, err)
	}
	return &object{obj: obj, a: a, key: key}, nil
}

// Stat returns the object's size.
func (a *Archive) Stat(ctx context.Context, key string) (int64, error) {
	oi, err := a.client.StatObject(ctx, a.cfg.Bucket, a.ObjectName(key), minio.StatObjectOptions{})
	if err != nil {
		return 0, a.err(key, err)
	}
	return oi.Size, nil
}

// Delete removes the object.
func (a *Archive) Delete(ctx context.Context, key string) error {
	err := a.client.RemoveObject(ctx, a.cfg.Bucket, a.ObjectName(key), minio.RemoveObjectOptions{})
	if err != nil && !errors.Is(a.err(key, err), sluice.ErrNotFound) {
		return a.err(key, err)
	}
	return nil
}

func (a *Archive) err(key string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, "NotFound":
		return fmt.Errorf("s3 %s: %w", a.ObjectName(key), sluice.ErrNotFound)
	}
	return fmt.Errorf("s3 %s: %w", a.ObjectName(key), err)
}

// object maps a GET's errors to the archive's.
type object struct {
	obj *minio.Object
	a   *Archive
	key string
}

func (o *object) Read(p []byte) (int, error) {
	n, err := o.obj.Read(p)
	if err != nil && err != io.EOF {
		err = o.a.err(o.key, err)
	}
	return n, err
}

func (o *object) Close() error { return o.obj.Close() }

// Ready reports whether the bucket answers: it exists, and the credentials reach it.
func (a *Archive) Ready(ctx context.Context) error {
	ok, err := a.client.BucketExists(ctx, a.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	if !ok {
		return fmt.Errorf("s3: bucket %s does not exist", a.cfg.Bucket)
	}
	return nil
}
