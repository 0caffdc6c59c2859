// Command mahfooz is the Mahfooz secure communication system: one binary for the
// authority, the exchange and the device. This file parses the command line and
// dispatches to the subcommands, each registered by its own file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// command is one subcommand: `mahfooz NAME ARGS...`.
type command struct {
	summary string
	run     func(args []string) error
}

// commands holds every subcommand; each file registers its own in init.
var commands = map[string]command{}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mahfooz <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'mahfooz <command> --help' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mahfooz: error: unknown command %q\nhint: run 'mahfooz --help' for the list\n", os.Args[1])
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "mahfooz: ")
		fmt.Fprintf(os.Stderr, "mahfooz: error: %s\n", msg)
		os.Exit(1)
	}
}
