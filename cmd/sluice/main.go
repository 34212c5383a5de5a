// Command sluice serves live byte streams over HTTP. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `sluice: live byte streams over HTTP

Usage:
  sluice serve [flags]                        run the server
  sluice run [flags] URL -- command [args]    run a command, streaming its output to URL
  sluice push [flags] URL [FILE|-]            publish a file or stdin to URL
  sluice tail [flags] URL                     follow the stream at URL to stdout
  sluice bench MODE URL [flags]               load a server: fanout, streams, ingest or churn
  sluice version                              print the version

sluice COMMAND --help prints a command's flags, examples and exit statuses.

Every flag can also be set by an environment variable: --data-dir is SLUICE_DATA_DIR.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		var silent *exitError // sluice run's command exited: it has said what it had to
		if !errors.As(err, &silent) || silent.err != nil {
			fmt.Fprintln(os.Stderr, "sluice:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks a mistake in the command line: exit status 2, as for flag errors.
type usageError struct{ error }

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

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "bench":
		return benchCmd(ctx, rest, stdout, stderr)
	case "run":
		return runCommand(ctx, rest, stdout, stderr)
	case "push":
		return push(ctx, rest, stdout, stderr)
	case "tail":
		return tail(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sluice", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

// envName is the environment variable that sets a flag: SLUICE_ and the flag's name in
// upper case with dashes as underscores.
func envName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags sets fs's flags from their environment variables, then from args, so that
// the command line wins. A bad value is a usage error naming where it came from.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// parseFlagsArgs is parseFlags for a command that takes arguments after its flags: they
// are left in fs.Args(). A one-letter flag is a short alias of another and has no
// variable of its own.
func parseFlagsArgs(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError{fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)}
			}
		}
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// printDefaults writes a flag set's help with each flag's environment variable. A
// one-letter flag is a short alias: its usage is the long flag's name, and it is shown
// with it.
func printDefaults(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			short[f.Usage] = "-" + f.Name + ", "
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			return
		}
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  %s--%s %s\n    \t%s (env %s", short[f.Name], f.Name, name, help, envName(f.Name))
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, ", default %s", f.DefValue)
		}
		fmt.Fprintln(w, ")")
	})
}
