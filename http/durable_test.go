package http

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/file"
	"github.com/sluicehq/sluice/mock"
	"github.com/sluicehq/sluice/sse"
)

// dsSSE follows the Durable Streams SSE of key from offset, and returns the bytes its
// data events carry (base64 decoded when the response says so), up to the control
// event that says the stream is closed; every data event must be followed by a
// control event whose offset is the busl offset after its bytes.
func dsSSE(ctx context.Context, ts *testServer, key, offset string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+durablePrefix+key+"?live=sse&offset="+offset, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("SSE: %s", resp.Status)
	}
	b64 := resp.Header.Get("Stream-SSE-Data-Encoding") == "base64"
	d := sse.NewDecoder(resp.Body)
	var got []byte
	wantControl := false
	for {
		e, err := d.Next()
		if err != nil {
			return got, fmt.Errorf("SSE ended before streamClosed: %w", err)
		}
		switch e.Type {
		case "data":
			if wantControl {
				return got, errors.New("two data events in a row")
			}
			b := []byte(e.Data)
			if b64 {
				if b, err = base64.StdEncoding.DecodeString(e.Data); err != nil {
					return got, err
				}
			}
			got, wantControl = append(got, b...), true
		case "control":
			var c control
			if err := json.Unmarshal([]byte(e.Data), &c); err != nil {
				return got, err
			}
			if wantControl && c.StreamNextOffset != formatOffset(int64(len(got))) {
				return got, fmt.Errorf("control at %s after %d bytes", c.StreamNextOffset, len(got))
			}
			wantControl = false
			if c.StreamClosed {
				return got, nil
			}
		}
	}
}

// dsLongPoll reads key by long-polls from offset until the stream is closed, and
// returns the bytes.
func dsLongPoll(ctx context.Context, ts *testServer, key, offset string) ([]byte, error) {
	var got []byte
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+durablePrefix+key+"?live=long-poll&offset="+offset, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return got, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent) {
			return got, fmt.Errorf("long-poll: %s, %v", resp.Status, err)
		}
		got = append(got, b...)
		offset = resp.Header.Get("Stream-Next-Offset")
		if offset != formatOffset(int64(len(got))) {
			return got, fmt.Errorf("long-poll: Stream-Next-Offset %s after %d bytes", offset, len(got))
		}
		if resp.Header.Get("Stream-Closed") == "true" {
			return got, nil
		}
	}
}

// TestCrossPrefixBuslToDurable proves "a stream published by busltee or sluice run on
// /streams/k is read byte-exact by a Durable Streams client on /v1/stream/k": a busl
// producer's chunked POST, bytes a text protocol cannot carry among them, arrives at a
// Durable Streams SSE follower (base64, since busl's streams are of no declared type)
// and a long-polling one, each live, while the POST is still arriving, and whole; each
// offset they are told is the busl offset of the same byte, and a catch-up read at the
// end agrees.
func TestCrossPrefixBuslToDurable(t *testing.T) {
	ts := newTestServer(t, Config{LongPollTimeout: 200 * time.Millisecond}, file.Options{})
	ctx := subCtx(t)
	subCreate(t, ts, "builds/1")
	content := append(subAwkward(), subContent(300<<10, 9)...)
	var wg sync.WaitGroup
	results := make([][]byte, 2)
	errs := make([]error, 2)
	for i, read := range []func(context.Context, *testServer, string, string) ([]byte, error){dsSSE, dsLongPoll} {
		wg.Go(func() { results[i], errs[i] = read(ctx, ts, "builds/1", "-1") })
	}
	// One chunked POST, written piece by piece: the followers get bytes as they come.
	pr, pw := io.Pipe()
	published := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.streamURL("builds/1"), pr)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		pr.CloseWithError(errors.New("request over"))
		published <- err
	}()
	pieces := subSplit(content, 5)
	for i, piece := range pieces {
		if _, err := pw.Write(piece); err != nil {
			t.Fatal(err)
		}
		if i%16 == 0 {
			time.Sleep(time.Millisecond) // let the followers catch up, and wait again
		}
		if i == len(pieces)/2 { // the POST is still arriving: its bytes are read already
			resEventually(t, 10*time.Second, "bytes on /v1/stream/ mid-publish", func() (bool, string) {
				resp, body := call(t, http.MethodGet, ts.url+durablePrefix+"builds/1?offset=-1", nil)
				return len(body) > 0 && resp.Header.Get("Stream-Closed") == "", fmt.Sprintf("%d bytes, closed %q", len(body), resp.Header.Get("Stream-Closed"))
			})
		}
	}
	pw.Close()
	if err := <-published; err != nil {
		t.Fatalf("publish: %v", err)
	}
	wg.Wait()
	for i, name := range []string{"SSE", "long-poll"} {
		if errs[i] != nil {
			t.Fatalf("%s: %v", name, errs[i])
		}
		subEqual(t, name, results[i], content)
	}
	resp, body := call(t, http.MethodGet, ts.url+durablePrefix+"builds/1?offset=-1", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if body != string(content) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("catch-up read: %d bytes of %s, want the %d published", len(body), resp.Header.Get("Content-Type"), len(content))
	}
}

// TestCrossPrefixDurableToBusl proves the other way round: appends of the Durable
// Streams protocol, the last one closing the stream, are read byte-exact by busl's raw
// and SSE followers, whose offsets are those of the same bytes.
func TestCrossPrefixDurableToBusl(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	ctx := subCtx(t)
	resp, body := call(t, http.MethodPut, ts.url+durablePrefix+"notes", nil, "Content-Type", "text/plain")
	wantStatus(t, resp, body, http.StatusCreated)
	raw := subGet(t, ctx, ts, "notes", "", nil)
	events := subGet(t, ctx, ts, "notes", "", subHeader("Accept", "text/event-stream"))
	var want []byte
	for i := range 20 {
		line := fmt.Sprintf("note %d: é\r\n", i)
		h := []string{"Content-Type", "text/plain"}
		if i == 19 {
			h = append(h, "Stream-Closed", "true")
		}
		resp, body := call(t, http.MethodPost, ts.url+durablePrefix+"notes", strings.NewReader(line), h...)
		wantStatus(t, resp, body, http.StatusNoContent)
		want = append(want, line...)
		if got := resp.Header.Get("Stream-Next-Offset"); got != formatOffset(int64(len(want))) {
			t.Fatalf("Stream-Next-Offset %s after %d bytes", got, len(want))
		}
	}
	b, err := io.ReadAll(raw.Body)
	if err != nil {
		t.Fatal(err)
	}
	subEqual(t, "raw", b, want)
	got, ended, err := newSubSSE(events.Body, 0).rest()
	if err != nil || !ended {
		t.Fatalf("SSE: ended %v, %v", ended, err)
	}
	subEqual(t, "SSE", got, want)
	if !bytes.Equal(b, got) {
		t.Fatal("raw and SSE differ")
	}
}

// TestDurableJSONOnBusl proves that a Durable Streams JSON stream reads on /streams/ as
// newline-delimited JSON, each message compact on its line, and that its messages come
// back as one array per read on /v1/stream/, across appends.
func TestDurableJSONOnBusl(t *testing.T) {
	ts := newTestServer(t, Config{}, file.Options{})
	resp, body := call(t, http.MethodPut, ts.url+durablePrefix+"events", strings.NewReader(`[{"a": 1}, {"b": [1, 2]}]`), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusCreated)
	resp, body = call(t, http.MethodPost, ts.url+durablePrefix+"events", strings.NewReader("\"three\""), "Content-Type", "application/json")
	wantStatus(t, resp, body, http.StatusNoContent)
	resp, body = call(t, http.MethodGet, ts.streamURL("events")+"?follow=false", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if want := "{\"a\":1}\n{\"b\":[1,2]}\n\"three\"\n"; body != want {
		t.Fatalf("on /streams/: %q, want %q", body, want)
	}
	resp, body = call(t, http.MethodGet, ts.url+durablePrefix+"events?offset=-1", nil)
	wantStatus(t, resp, body, http.StatusOK)
	if want := `[{"a":1},{"b":[1,2]},"three"]`; body != want {
		t.Fatalf("on /v1/stream/: %s, want %s", body, want)
	}
}

// TestCutShortCatchUpReleasesTheStream: a catch-up read whose store fails halfway is
// aborted (the client sees a body shorter than its Content-Length), and the stream it
// opened is still released, once.
func TestCutShortCatchUpReleasesTheStream(t *testing.T) {
	info := sluice.Info{Length: 1 << 20, Closed: true, Version: "v1", Config: sluice.Config{ContentType: "text/plain"}}
	var released atomic.Int32
	st := &mock.Stream{
		InfoFn: func() sluice.Info { return info },
		ReadFn: func(_ context.Context, p []byte, off int64) ([]byte, sluice.Info, <-chan struct{}, error) {
			if off >= 64<<10 {
				return nil, info, nil, errors.New("disk gone")
			}
			n := min(int64(len(p)), 64<<10-off)
			return bytes.Repeat([]byte("x"), int(n)), info, nil, nil
		},
		ReleaseFn: func() { released.Add(1) },
	}
	store := &mock.Store{OpenFn: func(context.Context, string) (sluice.Stream, error) { return st, nil }}
	srv := NewServer(store, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/v1/stream/k?offset=-1")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil || n >= resp.ContentLength {
		t.Fatalf("read %d of %d bytes, err %v: want the response cut short", n, resp.ContentLength, err)
	}
	hs.Close() // waits for the handler
	if got := released.Load(); got != 1 {
		t.Fatalf("stream released %d times, want 1", got)
	}
}

// TestLongPollCutShort: a long-poll that End (a revoked capability) or the server's
// drain cuts short answers at once, as at its timeout: 204 with the stream's next
// offset, so that its client asks again from there (on another instance, in a drain).
func TestLongPollCutShort(t *testing.T) {
	ts := newTestServer(t, Config{LongPollTimeout: time.Minute}, file.Options{})
	for _, cut := range []string{"end", "drain"} {
		key := "lp-" + cut
		req, _ := http.NewRequest(http.MethodPut, ts.url+durablePrefix+key, strings.NewReader("abc"))
		req.Header.Set("Content-Type", "text/plain")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %v %v", resp, err)
		}
		type answer struct {
			resp *http.Response
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			resp, err := http.Get(ts.url + durablePrefix + key + "?live=long-poll&offset=now")
			got <- answer{resp, err}
		}()
		resEventually(t, 10*time.Second, "the long-poll waits", func() (bool, string) {
			return ts.fan.Followers() == 1, "followers"
		})
		start := time.Now()
		if cut == "end" {
			ts.EndFollowers(key)
		} else {
			ts.Drain()
		}
		a := <-got
		if a.err != nil {
			t.Fatalf("%s: %v", cut, a.err)
		}
		a.resp.Body.Close()
		if a.resp.StatusCode != http.StatusNoContent || a.resp.Header.Get("Stream-Next-Offset") == "" || time.Since(start) > 5*time.Second {
			t.Fatalf("a long-poll cut by %s: %s, Stream-Next-Offset %q after %v; want 204 with the offset at once",
				cut, a.resp.Status, a.resp.Header.Get("Stream-Next-Offset"), time.Since(start))
		}
	}
}
