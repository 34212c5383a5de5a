package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/internal/natstest"
)

// startNATS starts a three-node JetStream cluster in the test's process, shut down at
// test end.
func startNATS(t *testing.T) *natstest.Cluster {
	t.Helper()
	c, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// readRaw collects a raw follower's bytes until its response ends.
func readRaw(f *follower, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		f.add(buf[:n])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// TestClusterServe proves issue 6's "everything in PROTOCOL.md holds across instances"
// on three real `sluice serve --nats` processes sharing a real three-node JetStream
// cluster: publish to one instance, follow from the others, SIGKILL the publishing
// instance mid-stream, reconnect the producer to a third and resend from 0 (the overlap
// is skipped), resume a follower by offset on any instance, and race two publishers with
// the same bytes through different instances: every follower ends with a byte-identical
// copy, nothing lost or doubled.
func TestClusterServe(t *testing.T) {
	nc := startNATS(t)
	// One archive directory shared by all instances, as an S3 bucket would be.
	arDir := t.TempDir()
	var inst []*proc
	for range 3 {
		inst = append(inst, startSluice(t, freeAddr(t), t.TempDir(), "--nats", nc.URLs(),
			"--archive", "file://"+arDir, "--archive-retention", "0s"))
	}
	c := newClient(t)
	const key = "/streams/cluster/build"
	content := testContent(3 << 20)
	const chunk = 64 << 10

	// The stream exists once its first bytes are stored through instance 0.
	if r := do(t, c, http.MethodPost, inst[0].url+key, content[:chunk], "Stream-Close", "false"); r.status != http.StatusOK || r.length(t) != chunk {
		t.Fatalf("first publish: %d %v %q", r.status, r.header, r.body)
	}
	f1 := getFollower(t, c, "instance 1", inst[1].url+key, readRaw)
	f2 := getFollower(t, c, "instance 2", inst[2].url+key, readRaw)

	// Half the content through instance 0, each piece acknowledged, then instance 0 dies.
	acked := chunk
	for acked < len(content)/2 {
		r := do(t, c, http.MethodPost, inst[0].url+key, content[acked:acked+chunk],
			"Stream-Offset", strconv.Itoa(acked), "Stream-Close", "false")
		if r.status != http.StatusOK || r.length(t) != acked+chunk {
			t.Fatalf("publish at %d: %d %v %q", acked, r.status, r.header, r.body)
		}
		acked += chunk
	}
	f1.waitFor(t, acked)
	inst[0].cmd.Process.Kill()
	inst[0].waitExit(t, bound)

	// The producer reconnects to instance 2 and resends everything from 0; instance 1
	// is asked for the length (HEAD) as a resuming producer would.
	if r := do(t, c, http.MethodHead, inst[1].url+key, nil); r.status != http.StatusOK || r.length(t) != acked || r.closed() {
		t.Fatalf("HEAD on instance 1 after the kill: %d %v, want length %d open", r.status, r.header, acked)
	}
	if r := do(t, c, http.MethodPost, inst[2].url+key, content); r.status != http.StatusOK || r.length(t) != len(content) || !r.closed() {
		t.Fatalf("resend from 0 through instance 2: %d %v %q", r.status, r.header, r.body)
	}
	for _, f := range []*follower{f1, f2} {
		if err := f.wait(t); err != nil {
			t.Fatalf("%s follower: %v", f.name, err)
		}
		if !bytes.Equal(f.bytes(), content) {
			t.Fatalf("%s follower has %d bytes, want the %d published, identical", f.name, len(f.bytes()), len(content))
		}
	}
	// The closed stream is archived once, by one instance, and its live bytes removed;
	// it stays readable everywhere.
	ar, err := file.OpenArchive(arDir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(bound)
	for {
		if n, err := ar.Stat(context.Background(), "cluster/build"); err == nil && n == int64(len(content)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("closed stream not archived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Resume by offset on another instance than the one that took the bytes.
	off := len(content)/3 + 7
	if r := do(t, c, http.MethodGet, inst[1].url+key+"?offset="+strconv.Itoa(off), nil); r.status != http.StatusOK || !bytes.Equal(r.body, content[off:]) {
		t.Fatalf("GET ?offset=%d on instance 1: %d, %d bytes", off, r.status, len(r.body))
	}

	// Two publishers race on one key through different instances with the same bytes.
	const raced = "/streams/cluster/raced"
	var wg sync.WaitGroup
	for _, p := range inst[1:] {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, p.url+raced, bytes.NewReader(content))
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("racing publish via %s: %v", p.addr, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("racing publish via %s: %d", p.addr, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	for _, p := range inst[1:] {
		if r := do(t, c, http.MethodGet, p.url+raced, nil); r.status != http.StatusOK || !bytes.Equal(r.body, content) || !r.closed() {
			t.Fatalf("raced stream via %s: %d, %d bytes (want %d once each)", p.addr, r.status, len(r.body), len(content))
		}
	}

	// Purge through one instance frees the key on all.
	if r := do(t, c, http.MethodDelete, inst[1].url+raced+"?purge=true", nil); r.status != http.StatusOK && r.status != http.StatusNoContent {
		t.Fatalf("purge: %d", r.status)
	}
	if r := do(t, c, http.MethodHead, inst[2].url+raced, nil); r.status != http.StatusNotFound {
		t.Fatalf("HEAD after purge on another instance: %d, want 404", r.status)
	}
}

// TestClusterMaxOpenStreams proves that --max-open-streams holds with --nats, for the
// cluster as a whole, as it does for one machine's store: with a limit of 2 on two
// instances, a third stream is refused through either (503 with Retry-After, as
// PROTOCOL.md answers a server at its limit), publishes to existing streams go on, and
// a close through one instance frees a place for a create through the other.
func TestClusterMaxOpenStreams(t *testing.T) {
	nc := startNATS(t)
	var inst []*proc
	for range 2 {
		inst = append(inst, startSluice(t, freeAddr(t), t.TempDir(), "--nats", nc.URLs(), "--max-open-streams", "2"))
	}
	c := newClient(t)
	refused := func(url string) {
		t.Helper()
		r := do(t, c, http.MethodPut, url, nil)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("PUT %s beyond the limit: %d, Retry-After %q; want 503 with Retry-After", url, r.status, r.header.Get("Retry-After"))
		}
	}
	for i, p := range inst {
		if r := do(t, c, http.MethodPut, p.url+"/streams/limit/"+strconv.Itoa(i), nil); r.status != http.StatusCreated {
			t.Fatalf("PUT stream %d: %d %q", i, r.status, r.body)
		}
	}
	refused(inst[0].url + "/streams/limit/third")
	refused(inst[1].url + "/streams/limit/third")
	if r := do(t, c, http.MethodPost, inst[1].url+"/streams/limit/0", []byte("still open"), "Stream-Close", "false"); r.status != http.StatusOK || r.length(t) != 10 {
		t.Fatalf("publish to an existing stream at the limit: %d %q", r.status, r.body)
	}
	if r := do(t, c, http.MethodDelete, inst[1].url+"/streams/limit/0", nil); r.status != http.StatusOK || !r.closed() {
		t.Fatalf("close: %d %v", r.status, r.header)
	}
	if r := do(t, c, http.MethodPut, inst[0].url+"/streams/limit/third", nil); r.status != http.StatusCreated {
		t.Fatalf("PUT after a close freed a place: %d %q", r.status, r.body)
	}
	refused(inst[1].url + "/streams/limit/fourth")
}
