package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// maxBatch bounds the bytes of lines sent in one chunk: as fast as possible means chunks
// of this size; at a rate, the lines due at once (after a stall).
const maxBatch = 64 << 10

// producer publishes one stream through one chunked POST, the way a build or a job
// streams its log: lines at a rate, each stamped with the time it is handed to the
// connection, then the end of the body, which closes the stream.
type producer struct {
	stream   int
	key      string
	lineSize int
	rate     float64 // lines per second; 0: as fast as the server takes them
	maxLines int64   // 0: no limit
	maxBytes int64   // 0: no limit
	duration time.Duration

	sentLines atomic.Int64 // for the progress display
	sentBytes atomic.Int64

	// Results, read after run returns.
	lines   int64
	bytes   int64
	crc     uint32
	start   time.Time     // first write
	last    time.Time     // start of the last write
	done    time.Time     // end of the last write
	acked   time.Time     // the response arrived: every byte stored, the stream closed
	maxLag  time.Duration // most a line was sent after its time
	length  int64         // the server's Stream-Length in its response
	closed  bool          // the server's Stream-Closed in its response
	err     error
	elapsed time.Duration
}

// achieved is the rate the producer kept, in lines per second: the asked rate when every
// line left on time, lower when the server (or the network) held the producer back.
func (p *producer) achieved() float64 {
	switch {
	case p.lines == 0:
		return 0
	case p.rate > 0 && p.lines > 1 && p.last.After(p.start):
		return float64(p.lines-1) / p.last.Sub(p.start).Seconds()
	case p.done.After(p.start):
		return float64(p.lines) / p.done.Sub(p.start).Seconds()
	}
	return 0
}

// run publishes until the line, byte or time limit, ends the body and reads the response
// (on Nchan and in Durable Streams: publishes each line as a message, then ends the
// stream: messages.go).
func (p *producer) run(ctx context.Context, t *target, runID string, deadline time.Time) {
	if _, ok := messageProtocols[t.proto]; ok {
		p.err = p.publishMessages(ctx, t, runID, deadline)
		return
	}
	p.err = p.publish(ctx, t, runID, deadline)
}

func (p *producer) publish(ctx context.Context, t *target, runID string, deadline time.Time) error {
	conn, _, err := t.dial(ctx, p.stream)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(deadline)
	head := "POST " + t.base.Path + t.pubPath(p.key) + " HTTP/1.1\r\n" +
		"Host: " + t.base.Host + "\r\n" +
		"User-Agent: sluice-bench\r\n" +
		"Request-Id: " + requestID(runID, fmt.Sprintf("p%d", p.stream)) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Transfer-Encoding: chunked\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	send := func(data []byte) error {
		var hdr [20]byte
		chunk := net.Buffers{append(strconv.AppendInt(hdr[:0], int64(len(data)), 16), '\r', '\n'), data, []byte("\r\n")}
		_, err := chunk.WriteTo(conn)
		return err
	}
	if err := p.writeLines(max(1, maxBatch/p.lineSize), send); err != nil {
		return fmt.Errorf("producer: after %d lines: %w%s", p.lines, err, earlyAnswer(conn))
	}
	if _, err := conn.Write([]byte("0\r\n\r\n")); err != nil {
		return fmt.Errorf("producer: end of body: %w%s", err, earlyAnswer(conn))
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1<<10), nil)
	if err != nil {
		return fmt.Errorf("producer: response: %w", err)
	}
	resp.Body.Close()
	p.acked = time.Now()
	p.length, _ = strconv.ParseInt(resp.Header.Get("Stream-Length"), 10, 64)
	p.closed = resp.Header.Get("Stream-Closed") == "true"
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("producer: %s", resp.Status)
	case p.length != p.bytes || !p.closed:
		return fmt.Errorf("producer: sent %d bytes, the server has %d (closed %v)", p.bytes, p.length, p.closed)
	}
	return nil
}

// earlyAnswer reads a response the server may have sent before the body ended (413,
// 409...), to say why writing failed.
func earlyAnswer(conn net.Conn) string {
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1<<10), nil)
	if err != nil {
		return ""
	}
	resp.Body.Close()
	return " (the server answered " + resp.Status + ")"
}

// writeLines sends the lines on schedule, at most perBatch at a time (those due at once),
// each batch stamped with the time it is sent, and records what it sent.
func (p *producer) writeLines(perBatch int, send func(data []byte) error) error {
	data := make([]byte, 0, perBatch*p.lineSize)
	limit := p.maxLines
	if p.maxBytes > 0 {
		byBytes := (p.maxBytes + int64(p.lineSize) - 1) / int64(p.lineSize)
		if limit == 0 || byBytes < limit {
			limit = byBytes
		}
	}
	if limit == 0 && p.duration <= 0 {
		return errors.New("no line, byte or time limit")
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	p.start = time.Now()
	for seq := int64(0); limit == 0 || seq < limit; {
		now := time.Now()
		if p.duration > 0 && now.Sub(p.start) >= p.duration {
			break
		}
		k := int64(perBatch)
		if p.rate > 0 {
			due := p.start.Add(time.Duration(float64(seq) / p.rate * float64(time.Second)))
			if wait := due.Sub(now); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				<-timer.C
				continue
			}
			p.maxLag = max(p.maxLag, now.Sub(due))
			k = min(k, int64(now.Sub(p.start).Seconds()*p.rate)+1-seq)
		}
		if limit > 0 {
			k = min(k, limit-seq)
		}
		k = max(k, 1)
		now = time.Now()
		data = data[:0]
		for i := range k {
			data = appendLine(data, seq+i, now, p.lineSize)
		}
		if seq == 0 {
			p.start = now // the schedule starts at the first write
		}
		p.last = now
		if err := send(data); err != nil {
			return err
		}
		p.crc = crc32.Update(p.crc, castagnoli, data)
		p.bytes += int64(len(data))
		seq += k
		p.lines = seq
		p.sentLines.Store(seq)
		p.sentBytes.Store(p.bytes)
	}
	p.done = time.Now()
	p.elapsed = p.done.Sub(p.start)
	return nil
}
