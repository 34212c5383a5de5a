// Package closelog remembers the streams that closed through a store, for the Archiver
// to pull: it is how both stores implement sluice.ArchivableStore's Notify and
// ClosedSince. It keeps the last Keep keys, so that its memory is bounded whatever the
// archive's state; an Archiver that falls further behind lists the store instead.
package closelog

import "sync"

// Keep is how many of the last closes a Log remembers.
const Keep = 4096

// Log is the closes of one store, numbered from 0. The zero value is ready to use.
type Log struct {
	mu     sync.Mutex
	keys   []string      // closes first, first+1, ...
	first  uint64        // the cursor of keys[0]
	notify chan struct{} // closed by the next Add
}

// Add records that the stream of key closed, and wakes whoever waits on Notify.
func (l *Log) Add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, key)
	if len(l.keys) >= 2*Keep { // trimmed in halves, so that Add costs O(1) on average
		n := len(l.keys) - Keep
		l.keys = append([]string(nil), l.keys[n:]...)
		l.first += uint64(n)
	}
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
}

// Notify returns a channel that the next Add closes.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	return l.notify
}

// Since returns the keys closed from cursor on, the cursor after them, and whether the
// log still held every one of them.
func (l *Log) Since(cursor uint64) (keys []string, next uint64, complete bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := l.first + uint64(len(l.keys))
	complete = cursor >= l.first
	if cursor < l.first {
		cursor = l.first
	}
	if cursor < end {
		keys = append(keys, l.keys[cursor-l.first:]...)
	}
	return keys, end, complete
}
