package main

// Operations commands: config check/example, schedule install/uninstall,
// status (with a Nagios mode) and notify (run by the OnFailure unit), plus
// the monitoring helpers a scheduled run uses (opsRunStart, opsRecordRun).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/config"
	"github.com/shopvault/shopvault/schedule"
)

// opsConfigPath returns the absolute path of the --config file.
func opsConfigPath(c *cli.Context) (string, error) {
	p := c.String("config")
	if p == "" {
		p = config.DefaultPath
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("config path %q: %w", p, err)
	}
	return abs, nil
}

// opsLoadConfig loads and validates the --config file with the
// environment overrides.
func opsLoadConfig(c *cli.Context) (*config.Config, string, error) {
	p, err := opsConfigPath(c)
	if err != nil {
		return nil, "", err
	}
	cfg, err := config.LoadEnv(p, os.Getenv)
	if err != nil {
		return nil, p, err
	}
	return cfg, p, nil
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "check the configuration file or print a starting one",
		Subcommands: []*cli.Command{
			{
				Name:  "check",
				Usage: "validate the configuration file; every error names its key and line",
				Action: func(c *cli.Context) error {
					p, err := opsConfigPath(c)
					if err != nil {
						return err
					}
					_, err = config.LoadEnv(p, os.Getenv)
					var errs config.Errors
					switch {
					case err == nil:
						fmt.Fprintf(c.App.Writer, "ok: %s\n", p)
						return nil
					case errors.As(err, &errs):
						for _, e := range errs {
							fmt.Fprintln(c.App.ErrWriter, e)
						}
						return cli.Exit(fmt.Sprintf("config check: %d problem(s) in %s", len(errs), p), exitError)
					default:
						return cli.Exit(fmt.Sprintf("config check: %v", err), exitError)
					}
				},
			},
			{
				Name:  "example",
				Usage: "print a commented configuration for a PrestaShop shop on Plesk",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "domain", Usage: "the shop's domain (web root /var/www/vhosts/DOMAIN/httpdocs)"},
					&cli.StringFlag{Name: "database", Usage: "the shop's database"},
					&cli.StringFlag{Name: "repository", Usage: "repository URL"},
				},
				Action: func(c *cli.Context) error {
					return config.WriteExample(c.App.Writer, config.PleskExample{
						Domain: c.String("domain"), Database: c.String("database"), Repository: c.String("repository"),
					})
				},
			},
		},
	}
}

// opsUnitOptions turns the configuration into unit options.
func opsUnitOptions(cfg *config.Config, configPath, binary string) schedule.UnitOptions {
	o := schedule.UnitOptions{
		Binary:          binary,
		ConfigPath:      configPath,
		BackupCalendar:  cfg.Schedule.Backup,
		CheckCalendar:   cfg.Schedule.Check,
		DrillCalendar:   cfg.Schedule.Drill,
		RandomizedDelay: cfg.Schedule.RandomizedDelay,
		CacheDir:        cfg.CacheDir,
		StateDir:        cfg.StateDir,
	}
	if p := cfg.Notifications.PrometheusTextfile; p != "" {
		o.ReadWritePaths = append(o.ReadWritePaths, filepath.Dir(p))
	}
	if t, ok := cfg.Targets[cfg.Schedule.DrillTarget]; ok && cfg.Schedule.DrillTarget != "" {
		o.DrillReadWritePaths = append(o.DrillReadWritePaths, t.Root)
	}
	return o
}

// opsRunner runs a command with its output on stderr.
func opsRunner(stderr io.Writer) schedule.Runner {
	return func(ctx context.Context, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return nil
	}
}

func scheduleCommand() *cli.Command {
	outputFlag := &cli.StringFlag{Name: "output", Usage: "write the units into `DIR` instead of " + schedule.SystemDir + " (nothing is enabled)"}
	dryRunFlag := &cli.BoolFlag{Name: "dry-run", Usage: "print what would be done; change nothing"}
	return &cli.Command{
		Name:  "schedule",
		Usage: "install the systemd timers: nightly backup, weekly check, monthly drill",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "write the systemd units and enable the timers",
				Flags: []cli.Flag{outputFlag, dryRunFlag,
					&cli.StringFlag{Name: "binary", Usage: "shopvault executable the units run (default: this one)"},
				},
				Action: func(c *cli.Context) error {
					cfg, p, err := opsLoadConfig(c)
					if err != nil {
						return err
					}
					bin := c.String("binary")
					if bin == "" {
						if bin, err = os.Executable(); err != nil {
							return fmt.Errorf("find the shopvault executable: %w (pass --binary)", err)
						}
						if resolved, err := filepath.EvalSymlinks(bin); err == nil {
							bin = resolved
						}
					}
					units, err := schedule.Units(opsUnitOptions(cfg, p, bin))
					if err != nil {
						return err
					}
					out := c.App.ErrWriter
					if c.Bool("dry-run") {
						out = c.App.Writer // the units are the data
					}
					return schedule.Install(c.Context, units, c.String("output"), c.Bool("dry-run"), out, opsRunner(c.App.ErrWriter))
				},
			},
			{
				Name:  "uninstall",
				Usage: "disable the timers and remove the units",
				Flags: []cli.Flag{outputFlag, dryRunFlag},
				Action: func(c *cli.Context) error {
					out := c.App.ErrWriter
					if c.Bool("dry-run") {
						out = c.App.Writer
					}
					return schedule.Uninstall(c.Context, c.String("output"), c.Bool("dry-run"), out, opsRunner(c.App.ErrWriter))
				},
			},
		},
	}
}

func opsDurationFlag(c *cli.Context, name string) (time.Duration, error) {
	d, err := config.ParseDuration(c.String(name))
	if err != nil {
		return 0, usageError("--%s: %v", name, err)
	}
	return d, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "last backup age, size and result; --nagios for a Nagios/Icinga plugin",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "nagios", Usage: "print one plugin line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"},
			&cli.BoolFlag{Name: "json", Usage: "print the state and the check result as JSON"},
			&cli.StringFlag{Name: "warning", Value: "26h", Usage: "warn when the last successful backup is older"},
			&cli.StringFlag{Name: "critical", Value: "50h", Usage: "critical when the last successful backup is older"},
		},
		Action: func(c *cli.Context) error {
			nagios := c.Bool("nagios")
			// In Nagios mode every problem is UNKNOWN (3), never a plain 1.
			unknown := func(err error) error {
				if !nagios {
					return err
				}
				fmt.Fprintf(c.App.Writer, "SHOPVAULT UNKNOWN - %s\n", strings.Join(strings.Fields(err.Error()), " "))
				return cli.Exit("", schedule.NagiosUnknown)
			}
			warn, err := opsDurationFlag(c, "warning")
			if err != nil {
				return unknown(err)
			}
			crit, err := opsDurationFlag(c, "critical")
			if err != nil {
				return unknown(err)
			}
			cfg, _, err := opsLoadConfig(c)
			if err != nil {
				return unknown(err)
			}
			st, err := schedule.LoadState(cfg.StateDir)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return unknown(err)
			}
			code, line := schedule.Nagios(st, warn, crit, time.Now())
			switch {
			case nagios:
				fmt.Fprintln(c.App.Writer, line)
				if code != schedule.NagiosOK {
					return cli.Exit("", code)
				}
				return nil
			case c.Bool("json"):
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					StateDir string         `json:"state_dir"`
					State    schedule.State `json:"state"`
					Check    struct {
						Code int    `json:"code"`
						Line string `json:"line"`
					} `json:"check"`
				}{cfg.StateDir, st, struct {
					Code int    `json:"code"`
					Line string `json:"line"`
				}{code, line}})
			}
			w := c.App.Writer
			if len(st.LastRun) == 0 {
				fmt.Fprintf(w, "no runs recorded in %s yet\n", cfg.StateDir)
				return nil
			}
			fmt.Fprintf(w, "%s\n\n", line)
			fmt.Fprintf(w, "%-8s %-20s %-9s %-10s %-9s %12s %s\n", "COMMAND", "STARTED", "DURATION", "RESULT", "SNAPSHOT", "ADDED", "LAST SUCCESS")
			for _, name := range opsSortedKeys(st.LastRun) {
				r := st.LastRun[name]
				last := "never"
				if s, ok := st.LastSuccess[name]; ok {
					last = s.End().Local().Format("2006-01-02 15:04")
				}
				snap := r.Snapshot
				if len(snap) > 8 {
					snap = snap[:8]
				}
				fmt.Fprintf(w, "%-8s %-20s %-9s %-10s %-9s %12s %s\n", name, r.Start.Local().Format("2006-01-02 15:04:05"),
					r.Duration.Round(time.Second), r.Result, snap, fmtBytes(r.BytesAdded), last)
				if r.Message != "" {
					fmt.Fprintf(w, "         %s\n", r.Message)
				}
			}
			return nil
		},
	}
}

func opsSortedKeys(m map[string]schedule.RunSummary) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// notifyCommand is run by the OnFailure= unit (shopvault-failure@.service)
// when a service failed without reporting it itself (killed, timed out).
func notifyCommand() *cli.Command {
	return &cli.Command{
		Name:   "notify",
		Usage:  "send the failure ping for a failed systemd unit (used by shopvault-failure@.service)",
		Hidden: true,
		Subcommands: []*cli.Command{{
			Name:  "failure",
			Flags: []cli.Flag{&cli.StringFlag{Name: "unit", Usage: "the failed unit"}},
			Action: func(c *cli.Context) error {
				cfg, _, err := opsLoadConfig(c)
				if err != nil {
					return err
				}
				unit := c.String("unit")
				fmt.Fprintf(c.App.ErrWriter, "shopvault: unit %s failed; see journalctl -u %s\n", unit, unit)
				if u := cfg.Notifications.PingFailure; u != "" {
					if err := schedule.Ping(c.Context, nil, u, cfg.Notifications.PingTimeout); err != nil {
						return fmt.Errorf("failure ping for %s: %w", unit, err)
					}
				}
				return nil
			},
		}},
	}
}

// opsRunStart sends the start ping of a scheduled run. Errors are logged
// to stderr, never returned: a dead monitor must not fail a backup.
func opsRunStart(ctx context.Context, cfg *config.Config, client *http.Client, stderr io.Writer) {
	if u := cfg.Notifications.PingStart; u != "" {
		if err := schedule.Ping(ctx, client, u, cfg.Notifications.PingTimeout); err != nil {
			fmt.Fprintf(stderr, "shopvault: warning: %v\n", err)
		}
	}
}

// opsRecordRun publishes the summary of a finished run: one JSON line on
// stdout (for the journal), the state file, the Prometheus textfile and
// the success ping (failure ping for failed and partial runs). Monitoring problems are logged to stderr
// and never change the run's outcome.
func opsRecordRun(ctx context.Context, cfg *config.Config, client *http.Client, s schedule.RunSummary, stdout, stderr io.Writer) {
	if err := s.WriteJSONLine(stdout); err != nil {
		fmt.Fprintf(stderr, "shopvault: warning: %v\n", err)
	}
	st, err := schedule.SaveState(cfg.StateDir, s)
	if err != nil {
		fmt.Fprintf(stderr, "shopvault: warning: %v\n", err)
	} else if p := cfg.Notifications.PrometheusTextfile; p != "" {
		if err := st.WritePrometheusTextfile(p); err != nil {
			fmt.Fprintf(stderr, "shopvault: warning: %v\n", err)
		}
	}
	// A partial run (unreadable files) needs a human too.
	u := cfg.Notifications.PingSuccess
	if s.Result != schedule.ResultOK {
		u = cfg.Notifications.PingFailure
	}
	if u != "" {
		if err := schedule.Ping(ctx, client, u, cfg.Notifications.PingTimeout); err != nil {
			fmt.Fprintf(stderr, "shopvault: warning: %v\n", err)
		}
	}
}
