package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDurableFanoutAndStreams drives a real Sluice server through its Durable Streams
// side (--protocol durable-streams): fanout, 20 SSE followers of 100 lines published as
// fast as answered, one POST each; then streams, 3 streams × 6 followers, SSE and
// long-poll mixed, at a rate. Every follower complete, and Sluice's /metrics counts the
// followers of both kinds while they wait.
func TestDurableFanoutAndStreams(t *testing.T) {
	url := startServer(t, nil)
	cfg := small(url, 0)
	cfg.Protocol = ProtocolDurable
	reps, err := Fanout(context.Background(), cfg, []int{20}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reps[0]
	if rep.Target != TargetSluice || rep.Protocol != ProtocolDurable || rep.Transport != "sse" {
		t.Errorf("report: target %q, protocol %q, transport %q", rep.Target, rep.Protocol, rep.Transport)
	}
	checkComplete(t, rep, 20, 100, 128)
	var out bytes.Buffer
	rep.WriteTable(&out)
	if !strings.Contains(out.String(), "(sluice, durable-streams)") {
		t.Errorf("the table does not name the protocol:\n%s", out.String())
	}

	cfg = small(url, 6)
	cfg.Protocol, cfg.Streams, cfg.Transport, cfg.Rate, cfg.Lines, cfg.LineSize = ProtocolDurable, 3, "mix", 200, 60, 100
	rep, err = Streams(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, rep, 18, 180, 100)
	// Each long-poll follower asks again at least once a line, as lines come 5 ms apart.
	if rep.Connect.Polls < 9*20 || rep.Connect.Reconnects != 0 {
		t.Errorf("%d long-polls, %d SSE reconnections; want at least 180, and 0", rep.Connect.Polls, rep.Connect.Reconnects)
	}
}

// TestDurableSSEResumes runs --target durable-streams against a server that ends every
// event stream after one batch, sends each line as a data event of its own with one
// control event after them all (as the Node reference server does), and a control event
// with no new offset when a wait runs out: every follower resumes at the last control
// event's offset, again and again, and gets every byte once. Server figures come from
// /proc, here the test's own process.
func TestDurableSSEResumes(t *testing.T) {
	srv := httptest.NewServer(newBatchServer())
	t.Cleanup(srv.Close)
	cfg := small(srv.URL, 0)
	cfg.Target, cfg.ServerPID, cfg.Lines, cfg.Rate = TargetDurable, os.Getpid(), 30, 100
	reps, err := Fanout(context.Background(), cfg, []int{10}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep := reps[0]
	if rep.Complete != 10 || !rep.OK() {
		t.Fatalf("%d of 10 complete; incomplete %+v; producer errors %v", rep.Complete, rep.Incomplete, rep.Producers.Errors)
	}
	if rep.Protocol != ProtocolDurable || rep.Latency.Count != 300 || rep.Connect.Reconnects < 10*5 {
		t.Errorf("protocol %q, %d latencies, %d reconnections; want durable-streams, 300, at least 50",
			rep.Protocol, rep.Latency.Count, rep.Connect.Reconnects)
	}
	if s := rep.Server; !s.Before.OK || s.Before.Metrics || s.PID != os.Getpid() {
		t.Errorf("server figures not from /proc alone: %+v", s.Before)
	}
}

// batchServer is a Durable Streams server of text streams held in memory, enough for
// TestDurableSSEResumes: each SSE response carries what the stream holds past its
// offset, then ends.
type batchServer struct {
	mu      sync.Mutex
	streams map[string]*batchStream
}

type batchStream struct {
	data    []byte
	closed  bool
	changed chan struct{} // closed, and replaced, at every change
}

func newBatchServer() *batchServer { return &batchServer{streams: make(map[string]*batchStream)} }

func offsetOf(n int) string { return fmt.Sprintf("%020d", n) }

func (s *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := s.streams[r.URL.Path]
	switch {
	case r.Method == http.MethodPut && st == nil:
		s.streams[r.URL.Path] = &batchStream{changed: make(chan struct{})}
		s.mu.Unlock()
		w.Header().Set("Stream-Next-Offset", offsetOf(0))
		w.WriteHeader(http.StatusCreated)
	case st == nil:
		s.mu.Unlock()
		http.NotFound(w, r)
	case r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		st.data = append(st.data, body...)
		st.closed = st.closed || r.Header.Get("Stream-Closed") == "true"
		close(st.changed)
		st.changed = make(chan struct{})
		w.Header().Set("Stream-Next-Offset", offsetOf(len(st.data)))
		if st.closed {
			w.Header().Set("Stream-Closed", "true")
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s.mu.Unlock()
		s.events(w, r, st)
	}
}

// events answers a live=sse GET: the head at once, then, once the stream holds bytes
// past the offset or is closed (or after 50 ms), a data event a line and one control
// event, and the end of the response.
func (s *batchServer) events(w http.ResponseWriter, r *http.Request, st *batchStream) {
	off, _ := strconv.Atoi(r.URL.Query().Get("offset")) // -1: 0
	off = max(off, 0)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	s.mu.Lock()
	if len(st.data) <= off && !st.closed {
		changed := st.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
	}
	data, closed := st.data[off:], st.closed
	s.mu.Unlock()
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) > 0 {
			fmt.Fprintf(&out, "event: data\ndata:%s\ndata:\n\n", bytes.TrimSuffix(line, []byte("\n")))
		}
	}
	c, _ := json.Marshal(map[string]any{"streamNextOffset": offsetOf(off + len(data)), "streamClosed": closed})
	fmt.Fprintf(&out, "event: control\ndata:%s\n\n", c)
	w.Write(out.Bytes())
}

// TestDurableSSEReaderCatches proves the checks of Durable Streams' framing can fail.
func TestDurableSSEReaderCatches(t *testing.T) {
	ctl := func(next string, closed bool) string {
		return fmt.Sprintf("event: control\ndata:{\"streamNextOffset\":%q,\"streamClosed\":%v}\n\n", next, closed)
	}
	for _, tc := range []struct{ name, events, problem string }{
		{"offset back", ctl("02", false) + ctl("01", false), `offset "01" after "02"`},
		{"offset stuck", ctl("01", false) + "event: data\ndata:ab\n\n" + ctl("01", false), "again after more bytes"},
		{"no offset", "event: control\ndata:{}\n\n", "is not one of a stream's"},
		{"sentinel", ctl("-1", false), "is not one of a stream's"},
		{"not JSON", "event: control\ndata:{\n\n", "not JSON"},
		{"data after close", ctl("01", true) + "event: data\ndata:ab\n\n", "data after the end"},
		{"control after close", ctl("01", true) + ctl("01", true), "data after the end"},
		{"unknown event", "event: message\ndata:ab\n\n", `unknown event type "message"`},
		{"long control", "event: control\ndata:" + strings.Repeat("x", 2000) + "\n\n", "more than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v verifier
			feedSSE(newSSEReader(&v, ProtocolDurable), []byte(tc.events))
			if !strings.Contains(v.problem, tc.problem) {
				t.Errorf("problem %q, want %q", v.problem, tc.problem)
			}
		})
	}
	// Good framing: data lines joined with "\n" (a lone empty one is no bytes), a repeated
	// offset with nothing between, a comment.
	var v verifier
	r := newSSEReader(&v, ProtocolDurable)
	feedSSE(r, []byte(ctl("00", false)+ctl("00", false)+"event: data\ndata:a\ndata:b\ndata:\n\nevent: data\ndata:\n\n"+
		":keepalive\n\n"+ctl("03", true)))
	if v.problem != "" && !strings.Contains(v.problem, "shorter than its header") || v.n != 4 || !r.ended || r.next != "03" {
		t.Errorf("problem %q, %d bytes, ended %v, next %q; want the line check's only, 4, true, 03", v.problem, v.n, r.ended, r.next)
	}
}
