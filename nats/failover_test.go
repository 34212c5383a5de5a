package nats

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/natstest"
)

// TestNodeLoss proves "losing one NATS node of three loses nothing acknowledged":
// a producer on one instance and a follower on another keep going while the node that
// leads the stream is shut down mid-stream; the follower ends with exactly the bytes
// written, and a fresh instance reads the same.
func TestNodeLoss(t *testing.T) {
	c, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	pub := newStore(t, c, Options{RequestTimeout: 500 * time.Millisecond})
	sub := newStore(t, c, Options{RequestTimeout: 500 * time.Millisecond})
	if pub.opts.Replicas != 3 {
		t.Fatalf("default replicas on a 3-node cluster = %d, want 3", pub.opts.Replicas)
	}
	key := newKey(t)
	create(t, pub, key)
	hp := open(t, pub, key)
	hs := open(t, sub, key)
	want := make([]byte, 2<<20)
	for i := range want {
		want[i] = byte(i*31 + i>>11)
	}
	var got []byte
	var wg sync.WaitGroup
	wg.Go(func() { got = follow(t, hs, 0) })

	const piece = 8 << 10
	killed := false
	deadline := time.Now().Add(failAfter)
	for off := 0; off < len(want); {
		if time.Now().After(deadline) {
			t.Fatalf("producer stuck at %d", off)
		}
		if off >= len(want)/2 && !killed {
			killed = true
			si, err := pub.js1.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range c.Opts {
				if si.Cluster != nil && o.ServerName == si.Cluster.Leader {
					t.Logf("stopping stream leader %s at offset %d", o.ServerName, off)
					c.Stop(i)
				}
			}
		}
		info, err := hp.Append(ctx, int64(off), want[off:min(off+piece, len(want))])
		if err != nil {
			t.Logf("append at %d: %v (retrying)", off, err)
			continue
		}
		off = int(info.Length)
	}
	for {
		if time.Now().After(deadline) {
			t.Fatal("close never succeeded")
		}
		if _, err := hp.Close(ctx); err == nil {
			break
		} else {
			t.Logf("close: %v (retrying)", err)
		}
	}
	wg.Wait()
	if !bytes.Equal(got, want) {
		t.Fatalf("follower on the other instance got %d bytes, want the %d acknowledged, identical", len(got), len(want))
	}
	fresh := newStore(t, c, Options{})
	if b := follow(t, open(t, fresh, key), 0); !bytes.Equal(b, want) {
		t.Fatalf("fresh instance reads %d bytes, want %d identical", len(b), len(want))
	}
}
