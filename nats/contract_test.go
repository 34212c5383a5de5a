package nats

import (
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/storetest"
)

// TestContract runs the Store contract shared with the file store on JetStream, with
// chunks of 4 bytes, so that most writes take several messages (an atomic batch).
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) sluice.ArchivableStore {
		return newStore(t, shared, Options{MaxStreamSize: o.MaxStreamSize, Archive: o.Archive, ChunkSize: 4})
	})
}
