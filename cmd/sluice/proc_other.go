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

// inNewGroup does nothing: there are no process groups to start the command in.
func inNewGroup(*exec.Cmd) {}

func (g *group) wait() int {
	g.cmd.Wait()
	if g.cmd.ProcessState == nil {
		return 1
	}
	return g.cmd.ProcessState.ExitCode()
}

func (g *group) signal(s os.Signal) error { return g.cmd.Process.Signal(s) }

func (g *group) killGroup(time.Duration, *slog.Logger) {}
