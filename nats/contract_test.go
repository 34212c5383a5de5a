package nats

import (
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the file store on JetStream.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, max int64) sluice.Store {
		return newStore(t, shared, Options{MaxStreamSize: max, ChunkSize: 4})
	})
}
