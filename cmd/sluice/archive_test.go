package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeArchivesByDefault proves the default configuration: `sluice serve` archives
// a closed stream to <data-dir>/archive as its exact bytes, with --archive-retention 0s
// removes the live copy at once, keeps serving the stream, counts the upload in
// /metrics, and a purge removes the archived file too.
func TestServeArchivesByDefault(t *testing.T) {
	dataDir := t.TempDir()
	p := startSluice(t, freeAddr(t), dataDir, "--archive-retention", "0s")
	c := newClient(t)
	data := testContent(100 << 10)
	r := do(t, c, "POST", p.url+"/streams/jobs/7", data, "Stream-Close", "true")
	if r.status != 200 {
		t.Fatalf("publish: %d %s", r.status, r.body)
	}
	var objs []string
	deadline := time.Now().Add(bound)
	for {
		objs, _ = filepath.Glob(filepath.Join(dataDir, "archive", "*", "*.log"))
		live, _ := filepath.Glob(filepath.Join(dataDir, "streams", "*", "*", "data"))
		if len(objs) == 1 && len(live) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive files %v, live data files %v; want one archived, none live", objs, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(objs[0]); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("archived file: %d bytes (err %v), want the stream's %d", len(b), err, len(data))
	}
	if r := do(t, c, "GET", p.url+"/streams/jobs/7", nil); r.status != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("GET after archiving: %d, %d bytes", r.status, len(r.body))
	}
	if m := do(t, c, "GET", p.url+"/metrics", nil); !strings.Contains(string(m.body), "sluice_archive_uploads_succeeded_total 1") {
		t.Error("/metrics does not count the archive upload")
	}
	if r := do(t, c, "DELETE", p.url+"/streams/jobs/7?purge=true", nil); r.status != 204 {
		t.Fatalf("purge: %d", r.status)
	}
	if objs, _ := filepath.Glob(filepath.Join(dataDir, "archive", "*", "*.log")); len(objs) != 0 {
		t.Fatalf("archived files after purge: %v", objs)
	}
}

// TestArchiveFlagErrors proves a mistaken --archive is a usage error (exit 2) naming it.
func TestArchiveFlagErrors(t *testing.T) {
	for _, v := range []string{"ftp://x", "s3://", "file://", "/just/a/path"} {
		clearEnv(t)
		t.Setenv("SLUICE_DATA_DIR", t.TempDir())
		t.Setenv("SLUICE_ADDR", "127.0.0.1:0")
		t.Setenv("SLUICE_ARCHIVE", v)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"serve"}, &stdout, &stderr)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "archive") {
			t.Errorf("SLUICE_ARCHIVE=%q: err %v (exit %d), want a usage error naming --archive", v, err, exitCode(err))
		}
	}
}
