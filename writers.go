package sluice

import (
	"errors"
	"fmt"
	"time"
)

// A stream remembers what its writers had accepted, so that a writer that retries after
// a lost answer is told "already stored" instead of storing its bytes twice: the last
// sequence a coordinating writer gave (the Durable Streams protocol's Stream-Seq), and
// for each idempotent producer its epoch and the last sequence number it had accepted.
// Stores commit this state with the bytes it guards, in one step, so that no crash can
// leave the bytes stored and the state behind (a retry would double them) or the other
// way round (a retry would be taken for a duplicate and lost).

// Errors of writers that Write reports.
var (
	// ErrSeqOrder means a Write's Seq is not greater than the stream's last.
	ErrSeqOrder = errors.New("sequence not greater than the stream's last")
	// ErrStaleEpoch means a producer wrote with an epoch older than the stream knows:
	// a newer instance of it has taken over (a zombie is fenced off).
	ErrStaleEpoch = errors.New("producer epoch is stale")
	// ErrProducerSeq means a producer's sequence number is not the next one: some of its
	// writes are missing.
	ErrProducerSeq = errors.New("producer sequence gap")
	// ErrProducerEpoch means a producer began a new epoch with a sequence number other
	// than 0.
	ErrProducerEpoch = errors.New("a new producer epoch must start at sequence 0")
)

// Producer names one write of an idempotent producer: the producer, its epoch (a
// restarted producer takes a greater one) and the write's sequence number in the epoch,
// from 0.
type Producer struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// ProducerState is what a stream knows of a producer: its epoch and the sequence number
// of its last accepted write, and when that was.
type ProducerState struct {
	Epoch uint64    `json:"epoch"`
	Seq   uint64    `json:"seq"`
	At    time.Time `json:"at"`
}

// ProducerError is an error about a producer's write, with what the stream expected.
type ProducerError struct {
	Err error // ErrStaleEpoch, ErrProducerSeq or ErrProducerEpoch
	// Epoch is the stream's epoch of the producer (for ErrStaleEpoch).
	Epoch uint64
	// Expected and Received are the sequence numbers the stream expected and got (for
	// ErrProducerSeq).
	Expected, Received uint64
}

func (e *ProducerError) Error() string {
	switch e.Err {
	case ErrStaleEpoch:
		return fmt.Sprintf("%v: the stream is at epoch %d", e.Err, e.Epoch)
	case ErrProducerSeq:
		return fmt.Sprintf("%v: expected %d, got %d", e.Err, e.Expected, e.Received)
	}
	return e.Err.Error()
}

func (e *ProducerError) Unwrap() error { return e.Err }

// MaxProducers is how many producers a stream remembers; past it, the one that wrote
// least recently is forgotten (and would start again at sequence 0).
const MaxProducers = 1024

// Writers is a stream's state of its writers. The zero value is a stream that no
// coordinating writer or producer has written to.
type Writers struct {
	// Seq is the last sequence a Write carried, compared byte by byte.
	Seq string `json:"seq,omitempty"`
	// Producers is each producer's state, by ID.
	Producers map[string]ProducerState `json:"producers,omitempty"`
	// ClosedBy is the producer write that closed the stream, if one did: its retry is
	// a duplicate, where any other write to the closed stream is ErrClosed.
	ClosedBy *Producer `json:"closed_by,omitempty"`
}

// Admit decides a Write to a stream whose state is info and whose writers' state is ws,
// before anything is stored, as the Durable Streams protocol orders it: a write to a
// closed stream is ErrClosed, unless it is the retry of the producer write that closed
// it or a plain close again; then a producer's write is checked (a retry of an accepted one is a duplicate,
// which is not stored again and is not an error); then the write's Seq. dup is true for
// a duplicate.
func (ws *Writers) Admit(info Info, w Write) (dup bool, err error) {
	if info.Closed {
		switch {
		case w.Producer != nil && ws.ClosedBy != nil && *w.Producer == *ws.ClosedBy:
			return true, nil
		case w.Producer != nil || len(w.Data) > 0 || !w.Close:
			return false, ErrClosed
		}
		return false, nil // a close of a closed stream
	}
	if p := w.Producer; p != nil {
		st, known := ws.Producers[p.ID]
		switch {
		case known && p.Epoch < st.Epoch:
			return false, &ProducerError{Err: ErrStaleEpoch, Epoch: st.Epoch}
		case known && p.Epoch == st.Epoch && p.Seq <= st.Seq:
			return true, nil
		case known && p.Epoch == st.Epoch && p.Seq > st.Seq+1:
			return false, &ProducerError{Err: ErrProducerSeq, Expected: st.Seq + 1, Received: p.Seq}
		case known && p.Epoch > st.Epoch && p.Seq != 0:
			return false, &ProducerError{Err: ErrProducerEpoch}
		case !known && p.Seq != 0:
			return false, &ProducerError{Err: ErrProducerSeq, Expected: 0, Received: p.Seq}
		}
	}
	if w.Seq != "" && w.Seq <= ws.Seq {
		return false, fmt.Errorf("%w: %q after %q", ErrSeqOrder, w.Seq, ws.Seq)
	}
	return false, nil
}

// Applied returns the state after w was stored at now; ws is not changed, so that a
// store can keep its state until the bytes are stored.
func (ws Writers) Applied(w Write, now time.Time) Writers {
	if w.Seq != "" {
		ws.Seq = w.Seq
	}
	if p := w.Producer; p != nil {
		m := make(map[string]ProducerState, len(ws.Producers)+1)
		for id, st := range ws.Producers {
			m[id] = st
		}
		m[p.ID] = ProducerState{Epoch: p.Epoch, Seq: p.Seq, At: now}
		if len(m) > MaxProducers {
			oldest := ""
			for id, st := range m {
				if oldest == "" || st.At.Before(m[oldest].At) {
					oldest = id
				}
			}
			delete(m, oldest)
		}
		ws.Producers = m
		if w.Close {
			c := *p
			ws.ClosedBy = &c
		}
	}
	return ws
}

// Empty reports whether no writer state is kept, as for every stream of busl's.
func (ws Writers) Empty() bool { return ws.Seq == "" && len(ws.Producers) == 0 && ws.ClosedBy == nil }
