//go:build unix

package main

import (
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// forwardedSignals are the signals sluice run passes on to its command's process group.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// ignoredAtStart records which of them sluice was started with ignored (nohup ignores
// SIGHUP; a shell ignores SIGINT in background jobs). It is set before main runs, before
// a signal.Notify undoes it.
var ignoredAtStart = func() map[os.Signal]bool {
	m := map[os.Signal]bool{}
	for _, s := range forwardedSignals {
		if signal.Ignored(s) {
			m[s] = true
		}
	}
	return m
}()

// inNewGroup makes cmd start in a process group of its own.
func inNewGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// wait waits for the command to exit and returns its exit status, 128+N if signal N
// killed it.
func (g *group) wait() int {
	g.cmd.Wait()
	state := g.cmd.ProcessState
	if state == nil {
		return 1
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// signal sends s to the command's process group.
func (g *group) signal(s os.Signal) error {
	return syscall.Kill(-g.pid(), s.(syscall.Signal))
}

// killGroup ends what is left of the process group once the command has exited:
// SIGTERM, then SIGKILL if some of it is still there after grace.
func (g *group) killGroup(grace time.Duration, log *slog.Logger) {
	pgid := g.pid()
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // nothing left
	}
	log.Info("terminating what is left of the command's process group", "pgid", pgid)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
	}
	log.Warn("killing what is left of the command's process group", "pgid", pgid, "grace", grace)
	syscall.Kill(-pgid, syscall.SIGKILL)
}
