// Command offload is the store-and-forward appliance: it takes e-commerce
// transactions from Kafka into a durable local WAL and forwards them on.
// Run `offload help` for the subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (corruption found, runtime error)
	exitUsage   = 2 // bad flags or configuration
)

// usageError marks errors that exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the appliance daemon: Kafka -> WAL -> engine -> outbox -> warehouse", runDaemon},
		{"validate", "check a configuration file and print the effective settings", runValidate},
		{"check", "preflight: prove Kafka, the warehouse and the local disk work with a configuration", runCheck},
		{"wal", "the WAL offline: stats, verify, repair (quarantine damaged entries), export", runWAL},
		{"dlq", "dead-letter records offline: list, export, replay", runDLQ},
		{"outbox", "sealed batches offline: list, retry a parked one", runOutbox},
		{"reconcile", "compare shipped batches, the warehouse's ledger and its rows; exit 0 only when all match", runReconcile},
		{"top", "dashboard of a running appliance (admin API)", runTop},
		{"demo", "everything embedded: Kafka, load generator, pipeline, warehouse, dashboard", runDemo},
		{"bench", "benchmark: the appliance draining a filled topic (--profile drain), or everything in-process", runBench},
		{"version", "print the version", runVersion},
	}
}

// dispatch runs the subcommand of a command (offload wal stats) that
// args[0] names.
func dispatch(args []string, stdout, stderr io.Writer, subs ...command) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	choices := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		return usageError{errors.New("missing subcommand: " + choices)}
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr)
		}
	}
	return usageError{fmt.Errorf("unknown subcommand %q: use %s", args[0], choices)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "offload %s: %v\n", c.name, err)
			return exitUsage
		case errors.Is(err, errFound):
			return exitFailure // the command printed what it found
		default:
			fmt.Fprintf(stderr, "offload %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "offload: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// errFound is returned by a command that has already reported a problem it
// found (corruption, a mismatch) and only needs a failing exit code.
var errFound = errors.New("problems found")

func usage(w io.Writer) {
	fmt.Fprintln(w, "offload: store-and-forward appliance for e-commerce transactions (Kafka -> WAL -> warehouse)")
	fmt.Fprintln(w, "\nUsage: offload COMMAND [flags]   (offload COMMAND -h for its flags)\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
}

// newFlags returns a flag set that prints its usage to stderr and returns
// errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("offload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, wrapping bad flags as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
	}
	return "dev"
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "offload %s\n", versionString())
	return nil
}
