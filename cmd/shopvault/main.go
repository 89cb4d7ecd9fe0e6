// Command shopvault backs up and restores PrestaShop shops: files and
// MariaDB databases in one encrypted, deduplicated snapshot, off-site over
// SFTP, with a host key that can write backups but not read them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/repo"
)

// Exit codes, like restic's.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitPartial     = 3
	exitNoRepo      = 10
	exitLocked      = 11
	exitWrongKey    = 12
	exitInterrupted = 130
)

var version = "0.1.0-dev"

// defaultMemoryLimit is the soft memory limit (GOMEMLIMIT overrides it):
// the garbage collector works harder near it instead of letting the heap
// grow to twice the live data. The live data of a backup is the index of
// the repository (about 100 bytes per blob) plus the snapshot's refs list.
const defaultMemoryLimit = 384 << 20

// restoreGCPercent is the GC target of the restoring commands on a local
// repository. A restore's live heap is mostly its plan (every selected
// entry) and allocates little once the packs stream (buffers are reused),
// so a tighter target costs almost no CPU: measured on the benchmark shop,
// peak RSS 152 -> 128 MB. Over SFTP, x/crypto/ssh and pkg/sftp allocate a
// fresh buffer per packet (~2 bytes of garbage per byte restored), and GC
// work grows as 1/GOGC: there the default 50 stays (restore CPU 10.2 ->
// 8.8 s on the benchmark shop over loopback SFTP).
const restoreGCPercent = 25

// tuneGCForRestore applies restoreGCPercent unless GOGC is set or the
// repository is remote.
func tuneGCForRestore(c *cli.Context) {
	if loc, err := repoLocation(c); err == nil && isSFTP(loc) {
		return
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(restoreGCPercent)
	}
}

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		// Half the default heap headroom: measured on the benchmark
		// corpus, peak RSS 166 -> 125 MB at the same speed.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the exit code. It is the entry point
// for tests too.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, interspersed(app, args))
	code := exitCode(ctx, err)
	if err != nil && code != exitOK {
		var ec cli.ExitCoder
		if !(errors.As(err, &ec) && err.Error() == "") {
			fmt.Fprintf(stderr, "shopvault: %v\n", err)
		}
	}
	return code
}

func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	var locked *repo.LockedError
	switch {
	case ctx.Err() != nil:
		// Interrupted by a signal. A context.Canceled from inside (a
		// stage stopped because another failed) is an ordinary error.
		return exitInterrupted
	case errors.As(err, &locked), errors.Is(err, backup.ErrBusy):
		return exitLocked
	case errors.Is(err, repo.ErrWrongKey), errors.Is(err, repo.ErrRecipientMismatch), errors.Is(err, repo.ErrNeedRestoreKey):
		return exitWrongKey
	case errors.Is(err, repo.ErrNoRepository):
		return exitNoRepo
	case errors.Is(err, backup.ErrPartial):
		return exitPartial
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, errUsage):
		return exitUsage
	}
	return exitError
}

var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "shopvault",
		Usage:     "encrypted, deduplicated, verified backups of PrestaShop shops (files + MariaDB) to a Storage Box",
		Version:   version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed and mapped to exit codes once, in run.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file", EnvVars: []string{"SHOPVAULT_CONFIG"}, Value: "/etc/shopvault/shopvault.toml"},
		},
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return usageError("%v", err)
		},
		Commands: []*cli.Command{
			initCommand(),
			backupCommand(),
			snapshotsCommand(),
			lsCommand(),
			restoreCommand(),
			checkCommand(),
			unlockCommand(),
			doctorCommand(),
		},
	}
	app.Commands = append(app.Commands, extraCommands()...)
	return app
}

// interspersed moves a command's flags before its positional arguments,
// so "restore latest --target /tmp/r" works: urfave/cli v2 stops parsing
// flags at the first positional argument.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	// Global flags before the command stay where they are.
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
		out = append(out, rest[0])
		if !strings.Contains(rest[0], "=") && takesValue(app.Flags, rest[0]) && len(rest) > 1 {
			out = append(out, rest[1])
			rest = rest[1:]
		}
		rest = rest[1:]
	}
	cmds := app.Commands
	var cmd *cli.Command
	for len(rest) > 0 {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(rest[0]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		cmd = next
		out = append(out, rest[0])
		rest = rest[1:]
		cmds = cmd.Subcommands
	}
	if cmd == nil {
		return append(out, rest...)
	}
	var global, flags, pos []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" && !hasFlag(cmd.Flags, a) && hasFlag(app.Flags, a) {
			// a global flag given after the command
			global = append(global, a)
			if !strings.Contains(a, "=") && takesValue(app.Flags, a) && i+1 < len(rest) {
				global = append(global, rest[i+1])
				i++
			}
			continue
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(cmd.Flags, a) && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	if len(global) > 0 {
		// insert the global flags right after the program name
		out = append(append([]string{out[0]}, global...), out[1:]...)
	}
	return append(append(out, flags...), pos...)
}

func hasFlag(flags []cli.Flag, arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func takesValue(flags []cli.Flag, arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
