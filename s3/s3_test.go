package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/archivetest"
	"github.com/sluicehq/sluice/s3"
)

// newArchive is an archive in the test bucket under a prefix of the test's own,
// reached at addr (the gateway, or a proxy in front of it), with 5 MiB parts (S3's
// smallest) so that a few MiB make a multipart upload, and few client retries so that
// faults reach the Archiver quickly.
func newArchive(t testing.TB, addr string) *s3.Archive {
	t.Helper()
	return newArchiveWith(t, addr, 5<<20)
}

// newArchiveWith is newArchive with the given part size (0 for the default).
func newArchiveWith(t testing.TB, addr string, partSize uint64) *s3.Archive {
	t.Helper()
	tr := &http.Transport{ResponseHeaderTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	a, err := s3.New(s3.Config{
		Bucket: bucket, Prefix: strings.ReplaceAll(t.Name(), "/", "-") + "/",
		Endpoint: "http://" + addr, Region: "us-east-1", PathStyle: true,
		AccessKey: accessKey, SecretKey: secretKey,
		PartSize: partSize, MaxRetries: 2, Transport: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// object reads an object straight from the gateway, as an operator's S3 tool would.
func object(t testing.TB, name string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obj, err := directClient().GetObject(ctx, bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// noObject asserts that no object, whole or partial, is visible under name.
func noObject(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := directClient().StatObject(ctx, bucket, name, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Fatalf("object %s: stat err %v, want NoSuchKey", name, err)
	}
}

// incompleteUploads lists the multipart uploads of name not completed nor aborted.
func incompleteUploads(t testing.TB, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for u := range directClient().ListIncompleteUploads(ctx, bucket, name, false) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		n++
	}
	return n
}

func sameBytes(t testing.TB, name string, data []byte) {
	t.Helper()
	got, err := object(t, name)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object %s: %d bytes (err %v), want the stream's %d bytes exactly", name, len(got), err, len(data))
	}
}

// TestS3ReadThrough proves, against a real S3 server: a closed stream is archived as an
// object holding exactly its bytes; once its live copy is removed, every transport
// answers exactly as it did from the live copy (raw with Content-Length, Range 206, 204,
// 416; SSE ids when resuming; WebSocket); a sequential read costs one GET and a Range
// request one ranged GET ("ranged reads go to the object store as ranged GETs").
func TestS3ReadThrough(t *testing.T) {
	p := newProxy(t)
	ar := newArchive(t, p.addr)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: time.Hour})
	srv := archivetest.NewServer(t, node.Store)
	data := archivetest.Data(300 << 10)
	key := "app/web.1/log"
	archivetest.Publish(t, srv.URL, key, data)
	archivetest.WaitFor(t, "the archive", func() bool { _, a := node.State(t, key); return a })
	if got := ar.ObjectName(key); got != "TestS3ReadThrough/app/web.1/log.log" {
		t.Errorf("object name %q", got)
	}
	sameBytes(t, ar.ObjectName(key), data)
	live := archivetest.Reads(t, srv.URL, key, len(data))
	archivetest.Check(t, live, data)

	st, err := node.Store.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	version := st.Info().Version
	st.Release()
	if err := node.Store.RemoveLive(context.Background(), key, version); err != nil {
		t.Fatal(err)
	}

	p.countGets(ar.ObjectName(key))
	body := archivetest.Reads(t, srv.URL, key, len(data))["raw"].Body
	if body != string(data) {
		t.Fatalf("raw read of the archived stream: %d bytes, want %d", len(body), len(data))
	}
	// Reads also reads ranges and transports; only its first, full read counts here.
	if g := p.getRanges(); len(g) == 0 || g[0] != "" {
		t.Fatalf("GETs of a full read: %q, want one without Range", g)
	}
	p.countGets(ar.ObjectName(key))
	r := get(t, srv.URL+"/streams/"+key, "bytes=1000-1099")
	if r != string(data[1000:1100]) {
		t.Fatalf("range read: %q", r)
	}
	if g := p.getRanges(); len(g) != 1 || g[0] != "bytes=1000-" {
		t.Fatalf("GETs of a Range request: %q, want one ranged GET from 1000", g)
	}

	archived := archivetest.Reads(t, srv.URL, key, len(data))
	archivetest.Check(t, archived, data)
	archivetest.Same(t, archived, live)
}

func get(t testing.TB, u, rng string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", rng)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("GET %s Range %s: %s, %v", u, rng, resp.Status, err)
	}
	return string(b)
}

// readsBack asserts that a raw read of the stream at u gives data.
func readsBack(t testing.TB, u string, data []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, data) {
		t.Fatalf("GET %s: %s, %d bytes (err %v), want the stream's %d", u, resp.Status, len(b), err, len(data))
	}
}

// TestS3Purge proves "DELETE ?purge=true removes the archived object too".
func TestS3Purge(t *testing.T) {
	ar := newArchive(t, gateway)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	srv := archivetest.NewServer(t, node.Store)
	archivetest.Publish(t, srv.URL, "gone", []byte("bytes\n"))
	archivetest.WaitFor(t, "the live copy to go", func() bool { l, _ := node.State(t, "gone"); return !l })
	sameBytes(t, ar.ObjectName("gone"), []byte("bytes\n"))

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/streams/gone?purge=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("purge: %s", resp.Status)
	}
	noObject(t, ar.ObjectName("gone"))
	if _, err := ar.Stat(context.Background(), "gone"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("Stat after purge: %v, want ErrNotFound", err)
	}
}

// TestS3Faults proves the failure rules: with the S3 server answering 500s, or going
// away mid multipart upload, the Archiver keeps retrying (its own attempts, beyond the
// client's); meanwhile no object, partial or whole, is visible and the live copy is
// kept; when the server comes back the archive completes with the stream's exact bytes,
// and no incomplete multipart upload is left behind.
func TestS3Faults(t *testing.T) {
	for _, fault := range []string{"500s", "gone mid-upload"} {
		t.Run(fault, func(t *testing.T) {
			p := newProxy(t)
			if fault == "500s" {
				p.fail.Store(true)
			} else {
				// The server vanishes as the second part starts, and stays away until
				// the Archiver has failed an attempt.
				p.onPart = func(n int64) bool {
					if n == 2 {
						go p.down()
						return true
					}
					return false
				}
			}
			ar := newArchive(t, p.addr)
			node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
			srv := archivetest.NewServer(t, node.Store)
			data := archivetest.Data(12 << 20) // three parts
			archivetest.Publish(t, srv.URL, "big", data)
			archivetest.WaitFor(t, "a failed attempt", func() bool {
				return node.Counter(t, "sluice_archive_uploads_failed_total") >= 1
			})
			noObject(t, ar.ObjectName("big"))
			if l, a := node.State(t, "big"); !l || a {
				t.Fatalf("during the outage: live copy %v, archived %v; want kept and not archived", l, a)
			}
			if fault == "500s" {
				p.fail.Store(false)
			} else {
				p.up()
			}
			archivetest.WaitFor(t, "the archive", func() bool { l, _ := node.State(t, "big"); return !l })
			sameBytes(t, ar.ObjectName("big"), data)
			if n := incompleteUploads(t, ar.ObjectName("big")); n != 0 {
				t.Errorf("%d incomplete multipart uploads left", n)
			}
			readsBack(t, srv.URL+"/streams/big", data)
		})
	}
}

// TestS3ArchiverRestart proves "a server restarted between close and archive completion
// finishes the archive": the Archiver stops while S3 fails (between attempts), or in the
// middle of a multipart upload, and the next one, started over the same store, archives
// the stream once S3 is back, with no object visible in between and no incomplete
// upload left.
func TestS3ArchiverRestart(t *testing.T) {
	for _, when := range []string{"between attempts", "mid-upload"} {
		t.Run(when, func(t *testing.T) {
			p := newProxy(t)
			midUpload, release := make(chan struct{}), make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			t.Cleanup(unblock) // never leave a handler held, even on failure
			if when == "between attempts" {
				p.fail.Store(true)
			} else {
				// The second part is held until the first Archiver has stopped.
				p.onPart = func(n int64) bool {
					if n == 2 {
						close(midUpload)
						<-release
					}
					return false
				}
			}
			ar := newArchive(t, p.addr)
			dir := t.TempDir()
			first := archivetest.NewNode(t, dir, ar, archivetest.Options{Retention: 0})
			srv := archivetest.NewServer(t, first.Store)
			data := archivetest.Data(11 << 20)
			archivetest.Publish(t, srv.URL, "r", data)
			if when == "between attempts" {
				archivetest.WaitFor(t, "a failed attempt", func() bool {
					return first.Counter(t, "sluice_archive_uploads_failed_total") >= 1
				})
			} else {
				select {
				case <-midUpload:
				case <-time.After(30 * time.Second):
					t.Fatal("the upload never reached its second part")
				}
			}
			first.Stop()
			unblock()
			p.fail.Store(false)
			noObject(t, ar.ObjectName("r"))

			second := archivetest.NewNode(t, dir, ar, archivetest.Options{Retention: 0})
			archivetest.WaitFor(t, "the archive", func() bool { l, _ := second.State(t, "r"); return !l })
			sameBytes(t, ar.ObjectName("r"), data)
			if n := incompleteUploads(t, ar.ObjectName("r")); n != 0 {
				t.Errorf("%d incomplete multipart uploads left", n)
			}
			srv2 := archivetest.NewServer(t, second.Store)
			readsBack(t, srv2.URL+"/streams/r", data)
		})
	}
}

// TestParseURL proves the --archive s3:// syntax: bucket, then an optional prefix.
func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, bucket, prefix string }{
		{"s3://logs", "logs", ""},
		{"s3://logs/", "logs", ""},
		{"s3://logs/sluice", "logs", "sluice/"},
		{"s3://logs/a/b/", "logs", "a/b/"},
	} {
		b, p, err := s3.ParseURL(c.in)
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", c.in, b, p, err, c.bucket, c.prefix)
		}
	}
	for _, in := range []string{"s3:///x", "file:///x", "logs"} {
		if _, _, err := s3.ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q): no error", in)
		}
	}
}

// TestS3EmptyStream proves an empty closed stream is archived too (an empty object) and
// answers as a closed live one: 204 to a GET, length 0 to a HEAD.
func TestS3EmptyStream(t *testing.T) {
	ar := newArchive(t, gateway)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	srv := archivetest.NewServer(t, node.Store)
	archivetest.Publish(t, srv.URL, "empty", nil)
	archivetest.WaitFor(t, "the live copy to go", func() bool { l, _ := node.State(t, "empty"); return !l })
	sameBytes(t, ar.ObjectName("empty"), []byte{})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, srv.URL+"/streams/empty", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[string]int{http.MethodGet: 204, http.MethodHead: 200}[method]
		if resp.StatusCode != want || resp.Header.Get("Stream-Length") != "0" || resp.Header.Get("Stream-Closed") != "true" {
			t.Errorf("%s: %d, Stream-Length %q, Stream-Closed %q; want %d, 0, true", method, resp.StatusCode,
				resp.Header.Get("Stream-Length"), resp.Header.Get("Stream-Closed"), want)
		}
	}
}
