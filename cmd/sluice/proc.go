package main

import (
	"os"
	"os/exec"
	"time"
)

// group is sluice run's command, running in a process group of its own, so that a
// signal reaches everything it started, and what it leaves behind can be ended.
type group struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // the read ends of the command's output pipes; stderr is nil when merged
}

// startGroup starts argv with sluice's stdin, its stdout and stderr on pipes, and in a
// new process group. The pipes are the command's own (not goroutines of os/exec), so
// that the command's exit is seen even when a child it left behind holds them open.
// With merge, stdout and stderr are one pipe, which keeps the order of their writes.
func startGroup(argv []string, merge bool) (*group, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	g := &group{cmd: cmd}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	g.stdout, cmd.Stdout, cmd.Stderr = outR, outW, outW
	if !merge {
		errR, errW, err := os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			return nil, err
		}
		defer errW.Close()
		g.stderr, cmd.Stderr = errR, errW
	}
	cmd.Stdin = os.Stdin
	inNewGroup(cmd)
	err = cmd.Start()
	outW.Close()
	if err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *group) pid() int { return g.cmd.Process.Pid }

// stopReading ends the reads of the output pipes, which a process outside the group
// may hold open.
func (g *group) stopReading() {
	g.stdout.SetReadDeadline(time.Now())
	if g.stderr != nil {
		g.stderr.SetReadDeadline(time.Now())
	}
}

func (g *group) close() {
	g.stdout.Close()
	if g.stderr != nil {
		g.stderr.Close()
	}
}
