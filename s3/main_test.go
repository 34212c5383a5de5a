package s3_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/goleak"
)

// The tests run against a real S3 server: versitygw (posix backend over a temp dir),
// built by .ci/run (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0) and
// started once for the package.
const (
	accessKey = "sluicetest"
	secretKey = "sluicetestsecret"
	bucket    = "sluice"
)

// gateway is the address of the versitygw the tests share.
var gateway string

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3 tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	bin, err := findVersitygw()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "versitygw-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "--access", accessKey, "--secret", secretKey, "--port", addr, "posix", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if os.Getenv("SLUICE_VERBOSE") == "" {
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	gateway = addr
	if err := waitListening(addr, 20*time.Second); err != nil {
		return 0, err
	}
	c := directClient()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return 0, fmt.Errorf("make bucket: %w", err)
	}
	return goleakRun(m), nil
}

func goleakRun(m *testing.M) int {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// findVersitygw looks on PATH, then in $(go env GOPATH)/bin.
func findVersitygw() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return "", err
		}
		gopath = strings.TrimSpace(string(out))
	}
	p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found on PATH nor in %s: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", p)
	}
	return p, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// directClient talks to versitygw with no proxy between: the operator's view.
func directClient() *minio.Client {
	c, err := minio.New(gateway, &minio.Options{
		Creds:        credentials.NewStaticV4(accessKey, secretKey, ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
		Transport:    http.DefaultTransport,
	})
	if err != nil {
		panic(err)
	}
	return c
}
