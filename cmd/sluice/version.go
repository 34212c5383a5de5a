package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"
)

// version, when set at build time with -ldflags "-X main.version=v1.2.3", is the version
// of a build that has no VCS information to read it from (the container image's builder
// has no .git); otherwise the module's version is the one the Go toolchain records.
var version string

// versionCmd is sluice version.
type versionCmd struct{}

func (versionCmd) Help() string {
	return `Prints the version of the module, the commit it was built from and that commit's time (recorded by the Go toolchain at build time; "(devel)" for a build without them), and the Go version and platform.

Exit status: 0`
}

func (versionCmd) Run(con *console) error {
	bi, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprint(con.stdout, versionText(bi))
	return err
}

// versionFlag is sluice --version: sluice version, as a flag.
type versionFlag bool

func (versionFlag) BeforeApply(k *kong.Kong) error {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(k.Stdout, versionText(bi))
	k.Exit(0)
	return nil
}

// versionText is what sluice version prints, from the build information the Go
// toolchain records in the binary (bi, nil if there is none):
//
//	sluice v1.2.3
//	commit 39c4d18e5b0a1f2c3d4e5f60718293a4b5c6d7e8 (modified)
//	date   2026-11-30T10:00:00Z
//	go     go1.26.8 linux/amd64
func versionText(bi *debug.BuildInfo) string {
	v, rev, date, modified := versionOf(bi), "", "", false
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				date = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sluice %s\n", v)
	if rev != "" {
		fmt.Fprintf(&b, "commit %s", rev)
		if modified {
			b.WriteString(" (modified)")
		}
		b.WriteString("\n")
	}
	if date != "" {
		fmt.Fprintf(&b, "date   %s\n", date)
	}
	fmt.Fprintf(&b, "go     %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// versionOf is the version of a build with information bi (nil if none): -X
// main.version, or the module's, or "(devel)".
func versionOf(bi *debug.BuildInfo) string {
	if version == "" && bi != nil {
		return cmp.Or(bi.Main.Version, "(devel)")
	}
	return cmp.Or(version, "(devel)")
}

// moduleVersion is the running binary's version, for the log and sluice_build_info.
func moduleVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi)
}
