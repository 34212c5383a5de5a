package file_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/internal/archivetest"
)

func openArchive(t *testing.T) *file.Archive {
	t.Helper()
	a, err := file.OpenArchive(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestFileArchiveReadThrough proves the rule "reads of an archived stream through every
// transport behave exactly as for a closed live stream": a closed stream is archived to
// the local directory archive as its exact bytes, and once its live copy is removed,
// raw (Content-Length, Range 206, 204, 416), SSE (ids when resuming) and WebSocket
// answer exactly what they answered from the live copy.
func TestFileArchiveReadThrough(t *testing.T) {
	ar := openArchive(t)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: time.Hour})
	srv := archivetest.NewServer(t, node.Store)
	data := archivetest.Data(300 << 10)
	archivetest.Publish(t, srv.URL, "builds/42/log", data)
	archivetest.WaitFor(t, "the archive", func() bool { _, a := node.State(t, "builds/42/log"); return a })

	obj, err := os.ReadFile(ar.Path("builds/42/log"))
	if err != nil || !bytes.Equal(obj, data) {
		t.Fatalf("archived object: %d bytes, err %v; want the stream's %d bytes exactly", len(obj), err, len(data))
	}
	live := archivetest.Reads(t, srv.URL, "builds/42/log", len(data))
	archivetest.Check(t, live, data)

	info := openInfo(t, node.Store, "builds/42/log")
	if err := node.Store.RemoveLive(context.Background(), "builds/42/log", info.Version); err != nil {
		t.Fatal(err)
	}
	if l, _ := node.State(t, "builds/42/log"); l {
		t.Fatal("live copy still listed after RemoveLive")
	}
	archived := archivetest.Reads(t, srv.URL, "builds/42/log", len(data))
	archivetest.Check(t, archived, data)
	archivetest.Same(t, archived, live)
}

// TestArchiveRetentionZero proves "--archive-retention 0s removes the live copy at
// once" after a confirmed archive, and that the stream stays readable.
func TestArchiveRetentionZero(t *testing.T) {
	ar := openArchive(t)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	srv := archivetest.NewServer(t, node.Store)
	data := archivetest.Data(70 << 10)
	archivetest.Publish(t, srv.URL, "r0", data)
	archivetest.WaitFor(t, "the live copy to go", func() bool {
		live, _ := node.State(t, "r0")
		_, err := ar.Stat(context.Background(), "r0")
		return !live && err == nil
	})
	if got := node.Counter(t, "sluice_archive_uploads_succeeded_total"); got != 1 {
		t.Errorf("uploads succeeded: %v, want 1", got)
	}
	if got := node.Counter(t, "sluice_archive_bytes_total"); got != float64(len(data)) {
		t.Errorf("archive bytes: %v, want %d", got, len(data))
	}
	archivetest.Check(t, archivetest.Reads(t, srv.URL, "r0", len(data)), data)
}

// TestArchivePurge proves "DELETE ?purge=true removes the archived object too", and
// that the key is then free for a new stream.
func TestArchivePurge(t *testing.T) {
	ar := openArchive(t)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	srv := archivetest.NewServer(t, node.Store)
	archivetest.Publish(t, srv.URL, "p", []byte("hello\n"))
	archivetest.WaitFor(t, "the live copy to go", func() bool { l, _ := node.State(t, "p"); return !l })

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/streams/p?purge=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("purge: %s", resp.Status)
	}
	if _, err := ar.Stat(context.Background(), "p"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("archived object after purge: %v, want ErrNotFound", err)
	}
	resp, err = http.Get(srv.URL + "/streams/p")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after purge: %s, want 404", resp.Status)
	}
	archivetest.Publish(t, srv.URL, "p", []byte("new\n"))
	if b := archivetest.Reads(t, srv.URL, "p", 4)["raw"].Body; b != "new\n" {
		t.Fatalf("new stream of a purged key reads %q", b)
	}
}

// TestArchiverResumesAfterRestart proves "a server restarted between close and archive
// completion finishes the archive": streams closed while no Archiver ran are archived
// by the next one, at start-up.
func TestArchiverResumesAfterRestart(t *testing.T) {
	ar := openArchive(t)
	dir := t.TempDir()
	first := archivetest.NewNode(t, dir, ar, archivetest.Options{NoArchiver: true})
	data := archivetest.Data(50 << 10)
	srv := archivetest.NewServer(t, first.Store)
	for _, k := range []string{"a", "b/c"} {
		archivetest.Publish(t, srv.URL, k, data)
	}
	if l, a := first.State(t, "a"); !l || a {
		t.Fatalf("before restart: live %v archived %v, want live and not archived", l, a)
	}
	first.Stop() // the server stays up, but its store is gone: nothing is read from it again

	second := archivetest.NewNode(t, dir, ar, archivetest.Options{Retention: 0})
	for _, k := range []string{"a", "b/c"} {
		archivetest.WaitFor(t, "the archive of "+k, func() bool { l, _ := second.State(t, k); return !l })
		obj, err := os.ReadFile(ar.Path(k))
		if err != nil || !bytes.Equal(obj, data) {
			t.Fatalf("%s: archived %d bytes (err %v), want %d", k, len(obj), err, len(data))
		}
	}
	srv2 := archivetest.NewServer(t, second.Store)
	archivetest.Check(t, archivetest.Reads(t, srv2.URL, "b/c", len(data)), data)
}

// flaky is the local archive with a fault: its first Puts read part of the stream,
// then fail, as a connection reset mid-upload would.
type flaky struct {
	*file.Archive
	failures atomic.Int32
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.failures.Add(-1) >= 0 {
		io.CopyN(io.Discard, r, size/2)
		return errors.New("connection reset by peer")
	}
	return f.Archive.Put(ctx, key, r, size)
}

// TestArchiverRetryRereads proves "a retry re-reads the data from the store" (busl
// re-sent an empty body after a 5xx and archived nothing): after two failed attempts,
// each of which consumed half the stream, the object holds all of it.
func TestArchiverRetryRereads(t *testing.T) {
	ar := &flaky{Archive: openArchive(t)}
	ar.failures.Store(2)
	node := archivetest.NewNode(t, t.TempDir(), ar, archivetest.Options{Retention: 0})
	srv := archivetest.NewServer(t, node.Store)
	data := archivetest.Data(100 << 10)
	archivetest.Publish(t, srv.URL, "retry", data)
	archivetest.WaitFor(t, "the live copy to go", func() bool { l, _ := node.State(t, "retry"); return !l })
	obj, err := os.ReadFile(ar.Path("retry"))
	if err != nil || !bytes.Equal(obj, data) {
		t.Fatalf("archived %d bytes (err %v), want the stream's %d", len(obj), err, len(data))
	}
	if got := node.Counter(t, "sluice_archive_uploads_failed_total"); got != 2 {
		t.Errorf("failed uploads: %v, want 2", got)
	}
	if got := node.Counter(t, "sluice_archive_uploads_started_total"); got != 3 {
		t.Errorf("started uploads: %v, want 3", got)
	}
}

func openInfo(t *testing.T, s sluice.Store, key string) sluice.Info {
	t.Helper()
	st, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	return st.Info()
}

// TestArchiveRetention proves "after a configurable retention delay remove its live
// copy": with a 1 s retention the data file goes, and it goes no sooner than 1 s after
// the archive was recorded (the stream directory's mtime is the removal's time).
func TestArchiveRetention(t *testing.T) {
	ar := openArchive(t)
	dir := t.TempDir()
	node := archivetest.NewNode(t, dir, ar, archivetest.Options{Retention: time.Second})
	srv := archivetest.NewServer(t, node.Store)
	archivetest.Publish(t, srv.URL, "ret", []byte("kept a while\n"))
	archivetest.WaitFor(t, "the live copy to go", func() bool { l, _ := node.State(t, "ret"); return !l })

	h := sha256.Sum256([]byte("ret"))
	x := hex.EncodeToString(h[:])
	sdir := filepath.Join(dir, "streams", x[:2], x)
	b, err := os.ReadFile(filepath.Join(sdir, "archived"))
	if err != nil {
		t.Fatal(err)
	}
	var rec sluice.ArchiveRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sdir)
	if err != nil {
		t.Fatal(err)
	}
	// File times come from the kernel's coarse clock, up to a tick (≤ 10 ms) behind.
	if removed := fi.ModTime(); removed.Before(rec.At.Add(time.Second - 20*time.Millisecond)) {
		t.Fatalf("live copy removed at %v, %v after the archive: before the 1s retention", removed, removed.Sub(rec.At))
	}
	if _, err := os.Stat(filepath.Join(sdir, "data")); !os.IsNotExist(err) {
		t.Fatalf("data file: %v, want gone", err)
	}
}
