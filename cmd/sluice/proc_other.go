//go:build !unix

package main

import (
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// Without Unix process groups, sluice run forwards os.Interrupt to the command alone and
// cannot end what the command leaves behind.
var forwardedSignals = []os.Signal{os.Interrupt}

var ignoredAtStart = map[os.Signal]bool{}

type group struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
}

func startGroup(argv []string) (*group, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	return &group{cmd: cmd, stdout: outR, stderr: errR}, nil
}

func (g *group) pid() int { return g.cmd.Process.Pid }

func (g *group) wait() int {
	g.cmd.Wait()
	if g.cmd.ProcessState == nil {
		return 1
	}
	return g.cmd.ProcessState.ExitCode()
}

func (g *group) signal(s os.Signal) error { return g.cmd.Process.Signal(s) }

func (g *group) killGroup(time.Duration, *slog.Logger) {}

func (g *group) stopReading() {
	g.stdout.SetReadDeadline(time.Now())
	g.stderr.SetReadDeadline(time.Now())
}

func (g *group) close() {
	g.stdout.Close()
	g.stderr.Close()
}
