package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// hintError is an error followed by a `hint:` line when printed.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\nhint: " + e.hint }
func (e *hintError) Unwrap() error { return e.err }

// parseArgs parses flags that may come before or after positional arguments and
// returns the positional ones; everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// readPassphrase returns the passphrase from $MAHFOOZ_PASSPHRASE or, on a
// terminal, from a prompt without echo (asked twice if confirm is set). Errors
// carry the prefix of the command asking.
func readPassphrase(prefix string, stdin *os.File, stderr io.Writer, getenv func(string) string, prompt string, confirm bool) ([]byte, error) {
	if p := getenv(envPassphrase); p != "" {
		return []byte(p), nil
	}
	if stdin == nil || !term.IsTerminal(int(stdin.Fd())) {
		return nil, &hintError{errors.New(prefix + "no passphrase"), "set " + envPassphrase + " or run from a terminal"}
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(stderr, prompt)
		p, err := term.ReadPassword(int(stdin.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("%sreading passphrase: %w", prefix, err)
		}
		return p, nil
	}
	p, err := read(prompt)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, errors.New(prefix + "empty passphrase")
	}
	if confirm {
		q, err := read("again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New(prefix + "the passphrases differ")
		}
	}
	return p, nil
}
