// Command sluice serves live byte streams over HTTP, and publishes, follows and loads
// them. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/willabides/kongplete"
)

// cli is sluice's command line: one command a field, each with its flags, help and Run
// in the file named after it.
type cli struct {
	Serve      serveCmd      `cmd:"" help:"Run the server."`
	Run        runCmd        `cmd:"" help:"Run a command, publishing its output to a stream."`
	Push       pushCmd       `cmd:"" help:"Publish a file or stdin to a stream."`
	Tail       tailCmd       `cmd:"" help:"Follow a stream to stdout."`
	Bench      benchCmd      `cmd:"" help:"Load a server: fanout, streams, ingest or churn."`
	Token      tokenCmd      `cmd:"" help:"Print a capability token for the server's key."`
	Health     healthCmd     `cmd:"" help:"Check that a server answers its health endpoint (for container health checks)."`
	Version    versionCmd    `cmd:"" help:"Print the version."`
	Completion completionCmd `cmd:"" help:"Print the shell completion script for bash, zsh or fish."`
	Man        manCmd        `cmd:"" help:"Print the manual page (roff)."`
	Help       helpCmd       `cmd:"" help:"Show the help of a command."`

	VersionFlag versionFlag `name:"version" env:"-" help:"Print the version and exit."`
}

const description = `Live byte streams over HTTP.

Every flag can also be set by an environment variable, and the command line wins: SLUICE_ and the flag's name, so --data-dir is SLUICE_DATA_DIR. The flags of sluice bench and sluice health are SLUICE_BENCH_... and SLUICE_HEALTH_..., so that a benchmark's --duration or a probe's --timeout never sets another command's.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var silent *exitError // sluice run's command exited: it has said what it had to
		if !errors.As(err, &silent) || silent.err != nil {
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		os.Exit(exitCode(err))
	}
}

// console is where a command writes: sluice's stdout and stderr, or a test's buffers.
type console struct{ stdout, stderr io.Writer }

// exitNow is how the parser's Exit (after --help, --version or a completion request)
// ends run: a panic that run recovers, since kong would otherwise go on parsing.
type exitNow int

// run parses args and runs the command they name, writing to stdout and stderr. A
// request the parser answers itself (--help, --version, completion) returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	p, err := newParser(&cli{}, stdout, stderr)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitNow)
			if !ok {
				panic(r)
			}
			err = nil
			if code != 0 {
				err = &exitError{code: int(code)}
			}
		}
	}()
	kongplete.Complete(p, completer()...) // a shell asking for completions (COMP_LINE) gets them, and run ends
	if len(args) == 0 {
		p.Stdout = stderr
		if kctx, err := kong.Trace(p, nil); err == nil {
			kctx.PrintUsage(false)
		}
		return usageError{errors.New("no command given")}
	}
	kctx, err := p.Parse(args)
	if err != nil {
		return parseError(err)
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(&console{stdout: stdout, stderr: stderr})
	return kctx.Run()
}

// newParser returns the parser of sluice's command line into c.
func newParser(c *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("sluice"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitNow(code)) }),
		kong.Vars{"default_addr": defaultAddr(), "health_url": defaultHealthURL()},
		kong.ValueFormatter(helpValue),
		envars(),
	)
}

// helpValue is the help of a flag with its default and its environment variable:
// "Address to listen on (default :8080, $SLUICE_ADDR)."
func helpValue(v *kong.Value) string {
	var notes []string
	if v.HasDefault && v.Default != "" && v.Default != "0" && v.Default != "false" {
		notes = append(notes, "default "+v.Default)
	}
	for _, env := range v.Tag.Envs {
		notes = append(notes, "$"+env)
	}
	if len(notes) == 0 {
		return v.Help
	}
	help, dot := strings.CutSuffix(v.Help, ".")
	help += " (" + strings.Join(notes, ", ") + ")"
	if dot {
		help += "."
	}
	return help
}

// envars gives each flag its environment variable: SLUICE_ and the flag's name in upper
// case with dashes as underscores (--data-dir is SLUICE_DATA_DIR); under the commands of
// ownEnv, SLUICE_, the command's name and the flag's (SLUICE_BENCH_RATE), since their
// generic names (--duration, --rate, --timeout) mean something else there. A flag
// tagged env:"-" has none.
func envars() kong.Option {
	return kong.PostBuild(func(k *kong.Kong) error {
		var name func(n *kong.Node, prefix string)
		name = func(n *kong.Node, prefix string) {
			if n.Type == kong.CommandNode && ownEnv[n.Name] {
				prefix += strings.ToUpper(n.Name) + "_"
			}
			for _, f := range n.Flags {
				switch {
				case f.Name == "help":
				case len(f.Envs) == 1 && f.Envs[0] == "-":
					f.Envs, f.Value.Tag.Envs = nil, nil
				case len(f.Envs) == 0:
					env := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
					f.Envs, f.Value.Tag.Envs = []string{env}, []string{env}
				}
			}
			for _, child := range n.Children {
				name(child, prefix)
			}
		}
		name(k.Model.Node, "SLUICE_")
		return nil
	})
}

// ownEnv are the commands whose flags' variables have the command's name in them.
var ownEnv = map[string]bool{"bench": true, "health": true}

// usageError marks a mistake in the command line or the environment: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// parseError is the usage error of a command line the parser refused, on one line that
// names the command: "serve: unknown flag --adr, did you mean "--addr"?".
func parseError(err error) error {
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil {
		if n := pe.Context.Selected(); n != nil && !strings.HasPrefix(err.Error(), n.Path()+": ") {
			err = fmt.Errorf("%s: %w", n.Path(), err)
		}
	}
	return usageError{err}
}

// exitError ends sluice with an exit status of its own choosing: sluice run's command's,
// 128+N after signal N, or one that tells a failure apart (7: could not connect). With a
// nil err, main prints nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode is the exit status that err stands for.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// helpCmd is sluice help [COMMAND...]: the help of a command, as with --help.
type helpCmd struct {
	Command []string `arg:"" optional:"" help:"The command, such as serve or bench fanout."`
}

func (helpCmd) Help() string { return "Exit status: 0, or 2 for an unknown command" }

func (h *helpCmd) Run(k *kong.Kong) error {
	kctx, err := kong.Trace(k, h.Command)
	if err != nil {
		return err
	}
	if kctx.Error != nil {
		return usageError{fmt.Errorf("help: %w", kctx.Error)}
	}
	return kctx.PrintUsage(false)
}
