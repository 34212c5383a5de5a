//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// procSample reads the state of process pid and of its children from /proc, summed: CPU
// time, resident memory and open files. It measures a server on this machine, with or
// without /metrics, the same way whatever it is: nginx as its master and workers, Sluice
// as its one process. Resident memory is each process's RSS, as process_resident_memory_bytes
// in /metrics has it; pages shared between processes (nginx's shared memory zone, mapped
// by master and workers) count in each that has touched them.
func procSample(pid int) (Sample, error) {
	s := Sample{OK: true, Time: time.Now()}
	self, err := readStat(pid)
	if err != nil {
		return Sample{Time: time.Now()}, fmt.Errorf("process %d: %w", pid, err)
	}
	procs := []procStat{self}
	if d, err := os.Open("/proc"); err == nil {
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, name := range names {
			p, err := strconv.Atoi(name)
			if err != nil || p == pid {
				continue
			}
			if st, err := readStat(p); err == nil && st.ppid == pid {
				procs = append(procs, st)
			}
		}
	}
	page := float64(os.Getpagesize())
	for _, p := range procs {
		s.CPUSeconds += float64(p.ticks) / clockTicks
		s.RSSBytes += float64(p.rssPages) * page
		if d, err := os.Open(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
			fds, _ := d.Readdirnames(-1)
			d.Close()
			s.OpenFDs += float64(len(fds))
		}
	}
	return s, nil
}

// clockTicks is the unit of /proc's CPU times (USER_HZ, 100 on every Linux platform).
const clockTicks = 100

type procStat struct {
	pid, ppid int
	ticks     int64 // user and system time
	rssPages  int64
}

// readStat reads /proc/pid/stat (proc(5)): after the command name in parentheses come
// state, ppid, ... utime (field 14), stime (15), ... rss (24).
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state
	if len(f) < 22 {
		return procStat{}, errors.New("short /proc stat")
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(string(f[k-3]), 10, 64); return v }
	return procStat{pid: pid, ppid: int(num(4)), ticks: num(14) + num(15), rssPages: num(24)}, nil
}
