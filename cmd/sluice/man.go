package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// manCmd is sluice man: the manual page, made from the same grammar and texts as
// --help, so that the two never disagree.
type manCmd struct{}

func (manCmd) Help() string {
	return `Prints sluice's manual page (roff, section 1): every command with its description, exit statuses, examples and flags. To read it: sluice man | man -l -. To install it: sluice man > /usr/local/share/man/man1/sluice.1.

Exit status: 0`
}

func (manCmd) Run(k *kong.Kong, con *console) error {
	_, err := con.stdout.Write(md2man.Render([]byte(manPage(k.Model))))
	return err
}

// manPage is the manual page of app in the Markdown that go-md2man turns into roff.
func manPage(app *kong.Application) string {
	var b strings.Builder
	b.WriteString("% SLUICE 1\n\n# NAME\n\nsluice - live byte streams over HTTP\n\n# SYNOPSIS\n\n")
	leaves := leafCommands(app.Node)
	for _, n := range leaves {
		fmt.Fprintf(&b, "**sluice %s** %s\n\n", n.Path(), mdEscape(strings.TrimSpace(strings.TrimPrefix(n.Summary(), n.Path()))))
	}
	b.WriteString("# DESCRIPTION\n\n" + mdText(app.Help) + "\n\n# COMMANDS\n\n")
	for _, n := range leaves {
		fmt.Fprintf(&b, "## sluice %s\n\n%s\n\n", n.Path(), mdText(n.Help))
		if n.Detail != "" {
			b.WriteString(mdText(n.Detail) + "\n\n")
		}
		for _, f := range n.Flags {
			if f.Hidden {
				continue
			}
			term := "**--" + f.Name + "**"
			if f.Short != 0 {
				term = fmt.Sprintf("**-%c**, %s", f.Short, term)
			}
			if !f.IsBool() {
				term += "=*" + mdEscape(f.FormatPlaceHolder()) + "*"
			}
			fmt.Fprintf(&b, "%s\n: %s\n\n", term, mdEscape(helpValue(f.Value)))
		}
	}
	b.WriteString("# SEE ALSO\n\nThe README and docs/ of https://github.com/sluicehq/sluice: the protocol, the design, cluster mode.\n")
	return b.String()
}

// leafCommands are the commands under n that run (not those that only group others).
func leafCommands(n *kong.Node) []*kong.Node {
	var leaves []*kong.Node
	for _, c := range n.Children {
		if c.Hidden {
			continue
		}
		if len(c.Children) == 0 {
			leaves = append(leaves, c)
		}
		leaves = append(leaves, leafCommands(c)...)
	}
	return leaves
}

// mdText turns a help text into Markdown: its paragraphs as they are, and its lines
// indented by two spaces (exit statuses, examples) as preformatted blocks.
func mdText(s string) string {
	var out []string
	for _, para := range strings.Split(strings.TrimSpace(s), "\n\n") {
		lines := strings.Split(para, "\n")
		var text, code []string
		flush := func() {
			if len(code) > 0 {
				out = append(out, "```\n"+strings.Join(code, "\n")+"\n```")
				code = nil
			}
			if len(text) > 0 {
				out = append(out, mdEscape(strings.Join(text, "\n")))
				text = nil
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "  ") {
				if len(text) > 0 {
					flush()
				}
				code = append(code, l)
			} else {
				if len(code) > 0 {
					flush()
				}
				text = append(text, l)
			}
		}
		flush()
	}
	return strings.Join(out, "\n\n")
}

// mdSpecial are the characters that Markdown would read as markup.
var mdSpecial = regexp.MustCompile("[\\\\`*_{}\\[\\]()#+\\-.!|<>~]")

// mdEscape makes s literal text in Markdown.
func mdEscape(s string) string { return mdSpecial.ReplaceAllString(s, `\$0`) }
