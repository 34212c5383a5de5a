package sluice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// A stream whose content type is JSON keeps message boundaries: it holds records, each
// a JSON value in its compact form (json.Compact, so with no line break in it) followed
// by '\n'. The boundaries are in the bytes themselves, so no store keeps an index of
// them and the byte path (append, tail, fan-out) is the same for every stream: a JSON
// stream read as bytes is newline-delimited JSON, and a reader that must not split a
// message cuts a run of bytes at its last '\n'.

// ErrBadRecord means a JSON stream was given bytes that are not a JSON value.
var ErrBadRecord = errors.New("not a JSON value")

// Records reports whether a stream made with c keeps JSON records: its media type is
// application/json, as the Durable Streams protocol's JSON mode says.
func (c Config) Records() bool { return c.MediaType() == "application/json" }

// AppendRecord appends the record of the JSON value v to dst: v compacted, then '\n'.
func AppendRecord(dst, v []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		return dst, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// WholeRecords returns the length of the whole records at the start of b: up to and
// including its last '\n'.
func WholeRecords(b []byte) int { return bytes.LastIndexByte(b, '\n') + 1 }
