package main

import (
	"fmt"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// versionCmd is sluice version.
type versionCmd struct{}

func (versionCmd) Help() string { return "Exit status: 0" }

func (versionCmd) Run(con *console) error {
	_, err := fmt.Fprintln(con.stdout, "sluice", version)
	return err
}

// versionFlag is sluice --version: sluice version, as a flag.
type versionFlag bool

func (versionFlag) BeforeApply(k *kong.Kong) error {
	fmt.Fprintln(k.Stdout, "sluice", version)
	k.Exit(0)
	return nil
}
