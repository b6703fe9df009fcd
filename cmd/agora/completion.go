package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Shell completion: the shells ask the binary itself (urfave/cli's --generate-bash-completion)
// for the words that may follow, so completion always matches the commands of this version.

const bashCompletion = `# agora completion for bash: source <(agora completion bash)
_agora_complete() {
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _agora_complete agora
`

const zshCompletion = `#compdef agora
# agora completion for zsh: source <(agora completion zsh)
_agora() {
  local -a opts
  local cur="${words[-1]}"
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} "$cur" --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  compadd -- $opts
}
compdef _agora agora
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:        "completion",
		Usage:       "print the shell completion script for bash or zsh",
		ArgsUsage:   "bash|zsh",
		Description: examples("source <(agora completion bash)    # in ~/.bashrc", "source <(agora completion zsh)     # in ~/.zshrc"),
		Action: func(c *cli.Context) error {
			a := args(c)
			if len(a) != 1 {
				return usageError{"agora completion bash|zsh: name the shell"}
			}
			switch a[0] {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			default:
				return usageError{fmt.Sprintf("agora completion: bash or zsh, not %q", a[0])}
			}
			return nil
		},
	}
}
