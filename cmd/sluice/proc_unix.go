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

// group is sluice run's command, running in a process group of its own, so that a
// signal reaches everything it started, and what it leaves behind can be ended.
type group struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // the read ends of the command's output pipes
}

// startGroup starts argv with sluice's stdin, its stdout and stderr on pipes, and in a
// new process group. The pipes are the command's own (not goroutines of os/exec), so
// that the command's exit is seen even when a child it left behind holds them open.
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// stopReading ends the reads of the output pipes, which a process outside the group
// may hold open.
func (g *group) stopReading() {
	g.stdout.SetReadDeadline(time.Now())
	g.stderr.SetReadDeadline(time.Now())
}

func (g *group) close() {
	g.stdout.Close()
	g.stderr.Close()
}
