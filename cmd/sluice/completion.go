package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/posener/complete"
	"github.com/willabides/kongplete"
)

// completionCmd is sluice completion SHELL: the script that makes a shell complete
// sluice's command line. The completions themselves come from sluice, which the script
// runs with the line typed so far (run answers it: see completer).
type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" predictor:"shell" help:"The shell: bash, zsh or fish."`
}

func (completionCmd) Help() string {
	return `Prints the script that makes SHELL complete sluice's commands, flags and their values, as they are in the sluice on PATH, which the script runs to ask. To load it in every new shell:

  bash   sluice completion bash > /etc/bash_completion.d/sluice   (or: source <(sluice completion bash) in ~/.bashrc)
  zsh    source <(sluice completion zsh)                           (in ~/.zshrc)
  fish   sluice completion fish > ~/.config/fish/completions/sluice.fish

Exit status: 0, or 2 for a shell it has no script for`
}

// completionScripts hook sluice into each shell's completion: bash (and zsh, through
// its bash emulation) runs "sluice" with the line in COMP_LINE; fish's function sets it.
var completionScripts = map[string]string{
	"bash": "complete -o default -o bashdefault -C sluice sluice\n",
	"zsh": `autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
complete -o default -o bashdefault -C sluice sluice
`,
	"fish": `function __complete_sluice
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    sluice
end
complete -f -c sluice -a "(__complete_sluice)"
`,
}

func (c *completionCmd) Run(con *console) error {
	_, err := fmt.Fprint(con.stdout, completionScripts[c.Shell])
	return err
}

// completer answers a shell's request for completions (COMP_LINE in the environment),
// from the grammar, and ends run; without one it does nothing. Arguments and flags
// tagged predictor:"file" or "dir" complete to paths, "shell" to the shells above, and
// "transport" and "protocol" to the values of sluice bench's --transport and --protocol.
func completer() []kongplete.Option {
	return []kongplete.Option{
		kongplete.WithPredictor("file", complete.PredictFiles("*")),
		kongplete.WithPredictor("dir", complete.PredictDirs("*")),
		kongplete.WithPredictor("shell", complete.PredictSet(slices.Sorted(maps.Keys(completionScripts))...)),
		kongplete.WithPredictor("transport", complete.PredictSet(benchTransports...)),
		kongplete.WithPredictor("protocol", complete.PredictSet(benchProtocols...)),
	}
}
