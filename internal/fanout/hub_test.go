package fanout

import "testing"

// TestDropStale: in a hub pass, the reads whose stream has changed since are forgotten
// (the followers still to come read again), and the others kept, to be shared.
func TestDropStale(t *testing.T) {
	grown, same := make(chan struct{}), make(chan struct{})
	close(grown)
	reads := map[int64]read{
		0:  {buf: bufPool.Get().(*[]byte), changed: grown},
		10: {buf: bufPool.Get().(*[]byte), changed: same},
		20: {buf: bufPool.Get().(*[]byte)}, // a failed read: no channel
	}
	dropStale(reads)
	if _, ok := reads[0]; ok {
		t.Error("a read the stream has grown past is kept: the followers still to come in the pass would miss the new bytes")
	}
	if _, ok := reads[10]; !ok {
		t.Error("a read of the stream as it still is was dropped")
	}
	if _, ok := reads[20]; !ok {
		t.Error("a read without a change channel was dropped")
	}
}
