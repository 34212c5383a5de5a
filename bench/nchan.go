package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Nchan (nchan.io), the nginx module, is the fan-out server the targets compare Sluice
// with. With Config.Target "nchan" a run drives it with the same lines, followers and
// checks, through the locations of deploy/nchan-bench.conf:
//
//   - the producer POSTs each line as one message to /pub/{key}, on one keep-alive
//     connection, each after the answer to the one before (Nchan has no byte-stream
//     publish), and ends the stream by deleting the channel: DELETE /pub/{key};
//   - followers subscribe to /sub/{key} with SSE: each message is one event, whose data
//     lines joined with "\n" are the message's bytes, as on Sluice. Nchan's event ids are
//     its message ids, not offsets (not checked but for their presence), and the end is
//     the comment ":410: 410 Gone" the deletion sends, after which Nchan closes the
//     response (it is neither chunked nor of known length).
//
// Nchan creates a channel at its first message; subscribers that come first wait for it.

// publishMessages publishes the lines as messages, on schedule, then deletes the channel.
func (p *producer) publishMessages(ctx context.Context, t *target, runID string, deadline time.Time) error {
	mc := &msgConn{t: t, ctx: ctx, i: p.stream, deadline: deadline, path: t.base.Path + t.pubPath(p.key),
		id: requestID(runID, fmt.Sprintf("p%d", p.stream))}
	defer mc.close()
	err := p.writeLines(1, func(line []byte) error {
		status, err := mc.do(http.MethodPost, line)
		switch {
		case err != nil:
			return err
		case status != http.StatusCreated && status != http.StatusAccepted: // with and without subscribers
			return fmt.Errorf("publish: %d %s", status, http.StatusText(status))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("producer: after %d lines: %w", p.lines, err)
	}
	status, err := mc.do(http.MethodDelete, nil)
	if err != nil {
		return fmt.Errorf("producer: delete the channel: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("producer: delete the channel: %d %s", status, http.StatusText(status))
	}
	p.acked = time.Now()
	return nil
}

// msgConn sends requests one after the other on a keep-alive connection, dialling again
// when the server closes it (nginx does after keepalive_requests).
type msgConn struct {
	t        *target
	ctx      context.Context
	i        int // connection number, for the source address
	deadline time.Time
	path, id string

	conn net.Conn
	br   *bufio.Reader
	stop func() bool
}

// do sends method with body to the channel and returns the answer's status.
func (m *msgConn) do(method string, body []byte) (int, error) {
	if m.conn == nil {
		conn, _, err := m.t.dial(m.ctx, m.i)
		if err != nil {
			return 0, err
		}
		conn.SetDeadline(m.deadline)
		m.conn, m.br = conn, bufio.NewReaderSize(conn, 1<<10)
		m.stop = context.AfterFunc(m.ctx, func() { conn.Close() })
	}
	head := method + " " + m.path + " HTTP/1.1\r\n" +
		"Host: " + m.t.base.Host + "\r\n" +
		"User-Agent: sluice-bench\r\n" +
		"Request-Id: " + m.id + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	req := net.Buffers{[]byte(head), body}
	if _, err := req.WriteTo(m.conn); err != nil {
		m.close()
		return 0, err
	}
	resp, err := http.ReadResponse(m.br, nil)
	if err != nil {
		m.close()
		return 0, fmt.Errorf("response: %w", err)
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil || resp.Close {
		m.close()
	}
	return resp.StatusCode, nil
}

func (m *msgConn) close() {
	if m.conn != nil {
		m.stop()
		m.conn.Close()
		m.conn = nil
	}
}
