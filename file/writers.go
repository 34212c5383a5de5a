package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice"
)

// A stream's writers' state (sluice.Writers: its last Stream-Seq, its producers'
// epochs and sequence numbers) is committed with the bytes it guards through a journal,
// the file "writers": one JSON line per write that changed it, holding the new state
// and the range of offsets [start, end) of the write's bytes. The line is written
// before the bytes, so after a crash the last line tells whether its bytes made it: if
// the data file ends before the line's end, the write was never acknowledged, its bytes
// (all or part) are cut from the data file and the line dropped, so that the stream
// and its state are as before it, and the producer's retry is stored once. Otherwise
// the line's state is the stream's. The journal is rewritten as one line once it grows
// past maxJournal.

// maxJournal is the size past which a stream's journal is rewritten as one line.
const maxJournal = 64 << 10

// journal is a stream's writers' state and the file that records it.
type journal struct {
	writers sluice.Writers
	jf      *os.File // the journal, open for appending once a write changed the state
	jsize   int64    // its size
	jprev   int64    // its size before the last line, to take that line back
	jdirty  bool     // it has lines not yet fsynced
}

// entry is a line of the journal.
type entry struct {
	Start   int64          `json:"start"`
	End     int64          `json:"end"`
	Writers sluice.Writers `json:"writers"`
}

// loadWriters reads the stream's journal, undoing the last write if a crash cut it
// short (see above), and returns the size of the data file then.
func (st *stream) loadWriters(closed bool) (int64, error) {
	fi, err := st.f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	b, err := os.ReadFile(filepath.Join(st.dir, "writers"))
	if errors.Is(err, fs.ErrNotExist) {
		return size, nil
	}
	if err != nil {
		return 0, fmt.Errorf("writers: %w", err)
	}
	lines, cut := parseJournal(b)
	if n := len(lines); n > 0 && lines[n-1].e.End > st.base+size && !closed {
		last := lines[n-1]
		if err := st.f.Truncate(max(0, last.e.Start-st.base)); err != nil {
			return 0, fmt.Errorf("undo a write a crash cut short: %w", err)
		}
		size = max(0, last.e.Start-st.base)
		lines, cut = lines[:n-1], last.at
	}
	if cut < int64(len(b)) && !closed {
		if err := os.Truncate(filepath.Join(st.dir, "writers"), cut); err != nil {
			return 0, fmt.Errorf("writers: %w", err)
		}
	}
	if n := len(lines); n > 0 {
		st.writers = lines[n-1].e.Writers
	}
	return size, nil
}

type journalLine struct {
	e  entry
	at int64 // the offset of the line in the journal
}

// parseJournal returns the journal's complete lines and where they end; a last line cut
// short by a crash is not one of them.
func parseJournal(b []byte) ([]journalLine, int64) {
	var lines []journalLine
	r := bufio.NewReader(bytes.NewReader(b))
	at := int64(0)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF || len(line) == 0 || line[len(line)-1] != '\n' {
			return lines, at
		}
		var e entry
		if json.Unmarshal(line, &e) != nil {
			return lines, at
		}
		lines = append(lines, journalLine{e, at})
		at += int64(len(line))
	}
}

// logWriters journals next as the state after a write of n bytes at start; the
// caller holds st.mu, and writes the bytes after.
func (st *stream) logWriters(start, n int64, next sluice.Writers) error {
	if st.jf == nil || st.jsize > maxJournal {
		if err := st.rewriteJournal(); err != nil {
			return fmt.Errorf("writers: %w", err)
		}
	}
	b, _ := json.Marshal(entry{Start: start, End: start + n, Writers: next})
	b = append(b, '\n')
	if _, err := st.jf.WriteAt(b, st.jsize); err != nil {
		st.jf.Truncate(st.jsize)
		return fmt.Errorf("writers: %w", err)
	}
	st.jprev, st.jsize, st.jdirty = st.jsize, st.jsize+int64(len(b)), true
	if st.store.opts.SyncInterval > 0 {
		st.store.markDirty(st)
	}
	return nil
}

// unlogWriters takes back the journal's last line, whose write failed.
func (st *stream) unlogWriters() {
	if err := st.jf.Truncate(st.jprev); err != nil {
		st.store.log.Error("writers journal: take back a failed write", "key", st.key, "err", err)
		return
	}
	st.jsize = st.jprev
}

// rewriteJournal replaces the journal with one line of the current state, and opens it
// for appending.
func (st *stream) rewriteJournal() error {
	name := filepath.Join(st.dir, "writers")
	length := st.snap.Load().Info.Length
	b, _ := json.Marshal(entry{Start: length, End: length, Writers: st.writers})
	if err := writeFileAtomic(name, append(b, '\n')); err != nil {
		return err
	}
	st.closeJournal()
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	st.jf, st.jsize, st.jprev, st.jdirty = f, int64(len(b)+1), int64(len(b)+1), false
	return nil
}

func (st *stream) closeJournal() {
	if st.jf != nil {
		st.jf.Close()
		st.jf = nil
	}
}
