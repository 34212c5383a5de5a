package bench

import (
	"fmt"
	"net/http"
)

// Nchan (nchan.io), the nginx module, is the fan-out server the targets compare Sluice
// with. With Config.Target "nchan" a run drives it with the same lines, followers and
// checks, through the locations of deploy/nchan-bench.conf:
//
//   - the producer POSTs each line as one message to /pub/{key}, on one keep-alive
//     connection, each after the answer to the one before (Nchan has no byte-stream
//     publish: messages.go), and ends the stream by deleting the channel: DELETE
//     /pub/{key};
//   - followers subscribe to /sub/{key} with SSE: each message is one event, whose data
//     lines joined with "\n" are the message's bytes, as on Sluice. Nchan's event ids are
//     its message ids, not offsets (not checked but for their presence), and the end is
//     the comment ":410: 410 Gone" the deletion sends, after which Nchan closes the
//     response (it is neither chunked nor of known length).
//
// Nchan creates a channel at its first message; subscribers that come first wait for it.

// endChannel ends a stream on Nchan: it deletes the channel, which sends its subscribers
// ":410: 410 Gone".
func endChannel(m *msgConn, path string) error {
	resp, err := m.do(http.MethodDelete, path, "", nil)
	if err != nil {
		return fmt.Errorf("delete the channel: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("delete the channel: %s", resp.Status)
	}
	return nil
}
