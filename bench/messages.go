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

// Nchan and Durable Streams take bytes as messages, one request each, not as one
// streaming body. Their producers publish each line as one POST, on one keep-alive
// connection, each after the answer to the one before, then end the stream with a
// request of the protocol's (messageEnds); Durable Streams followers read in requests
// one after the other on a keep-alive connection too (durable.go).

// messageProtocol is how a protocol that takes messages is published to.
type messageProtocol struct {
	contentType string                // of every message
	taken       func(status int) bool // the answer to a line's POST says it was stored
	end         func(m *msgConn, path string) error
}

// messageProtocols are the protocols whose producers publish messages, by name.
var messageProtocols = map[string]messageProtocol{
	protocolNchan: {contentType: "text/plain; charset=utf-8", end: endChannel,
		taken: func(s int) bool { return s == http.StatusCreated || s == http.StatusAccepted }}, // with and without subscribers
	ProtocolDurable: {contentType: durableContentType, end: closeDurable,
		taken: func(s int) bool { return s == http.StatusNoContent || s == http.StatusOK }},
}

// publishMessages publishes the lines as messages, on schedule, then ends the stream.
func (p *producer) publishMessages(ctx context.Context, t *target, runID string, deadline time.Time) error {
	proto := messageProtocols[t.proto]
	mc := &msgConn{t: t, ctx: ctx, i: p.stream, deadline: deadline, contentType: proto.contentType,
		id: requestID(runID, fmt.Sprintf("p%d", p.stream))}
	defer mc.close()
	path := t.pubPath(p.key)
	err := p.writeLines(1, func(line []byte) error {
		resp, err := mc.do(http.MethodPost, path, "", line)
		switch {
		case err != nil:
			return err
		case !proto.taken(resp.StatusCode):
			return fmt.Errorf("publish: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("producer: after %d lines: %w", p.lines, err)
	}
	if err := proto.end(mc, path); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	p.acked, p.closed = time.Now(), true
	return nil
}

// msgConn sends requests one after the other on a keep-alive connection, dialling again
// when the server closes it (nginx does after keepalive_requests).
type msgConn struct {
	t           *target
	ctx         context.Context
	i           int // connection number, for the source address
	deadline    time.Time
	id          string // its Request-Id
	contentType string // of the bodies it sends

	conn net.Conn
	br   *bufio.Reader
	stop func() bool
}

// request sends method for uri (a path under the target's, and a query) with extra
// header lines ("Name: value\r\n"...) and body, and reads the answer's head. The caller
// reads the body to its end, or to an error, and hands both to done.
func (m *msgConn) request(method, uri, header string, body []byte) (*http.Response, error) {
	if m.conn == nil {
		conn, _, err := m.t.dial(m.ctx, m.i)
		if err != nil {
			return nil, err
		}
		conn.SetDeadline(m.deadline)
		m.conn, m.br = conn, bufio.NewReaderSize(conn, 1<<10)
		m.stop = context.AfterFunc(m.ctx, func() { conn.Close() })
	}
	head := method + " " + m.t.base.Path + uri + " HTTP/1.1\r\n" +
		"Host: " + m.t.base.Host + "\r\n" +
		"User-Agent: sluice-bench\r\n" +
		"Request-Id: " + m.id + "\r\n" + header
	if method != http.MethodGet {
		head += "Content-Type: " + m.contentType + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	req := net.Buffers{[]byte(head + "\r\n"), body}
	if _, err := req.WriteTo(m.conn); err != nil {
		m.close()
		return nil, err
	}
	resp, err := http.ReadResponse(m.br, nil)
	if err != nil {
		m.close()
		return nil, fmt.Errorf("response: %w", err)
	}
	return resp, nil
}

// done ends the answer resp, whose body was read to its end or until err: the
// connection is kept for the next request unless reading failed or the server closes it.
func (m *msgConn) done(resp *http.Response, err error) {
	if err != nil || resp.Close {
		m.close()
	}
	resp.Body.Close()
}

// do sends a request as request does and reads the answer's body (64 KiB of it at most).
func (m *msgConn) do(method, uri, header string, body []byte) (*http.Response, error) {
	resp, err := m.request(method, uri, header, body)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	m.done(resp, err)
	return resp, nil
}

// setDeadline sets the deadline of the connection, and of those dialled later.
func (m *msgConn) setDeadline(t time.Time) {
	m.deadline = t
	if m.conn != nil {
		m.conn.SetDeadline(t)
	}
}

func (m *msgConn) close() {
	if m.conn != nil {
		m.stop()
		m.conn.Close()
		m.conn = nil
	}
}
