package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/config"
	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/recovery"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// recoveryFlags are the flags of restore --to, verify and drill.
func recoveryRestoreFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "to", Usage: "restore target: 'full' (original paths and databases) or a target of the config ([targets.NAME], e.g. staging)"},
		&cli.StringFlag{Name: "root", Usage: "--to full: restore the original paths under this directory (a fresh machine's disk)"},
		&cli.StringFlag{Name: "db-into", Usage: "database server to load into, e.g. 'tcp(127.0.0.1:3306)/' (--to full: default the configured [[databases]] server; staging: overrides the target's)"},
		&cli.StringFlag{Name: "db-credentials", Usage: "option file with the database server's credentials", EnvVars: []string{"SHOPVAULT_DB_CREDENTIALS"}},
		&cli.BoolFlag{Name: "yes", Usage: "--to full: do not ask for confirmation"},
		&cli.BoolFlag{Name: "drop-existing", Usage: "staging: replace the tables of a target database that is not empty"},
		&cli.StringFlag{Name: "source", Usage: "staging: the shop's directory in the snapshot (default: found by its app/config/parameters.php)"},
		&cli.StringFlag{Name: "probe-url", Usage: "staging: fetch this URL at the end; it must answer 200 with the shop's name"},
		&cli.IntFlag{Name: "db-threads", Usage: "tables loaded in parallel", Value: dump.DefaultLoadThreads},
	}
}

// targetConfig returns the named target of the configuration.
func targetConfig(c *cli.Context, name string) (*config.Config, config.Target, error) {
	cfg, err := optionalConfig(c)
	if err != nil {
		return nil, config.Target{}, err
	}
	if cfg == nil {
		return nil, config.Target{}, usageError("target %q: no configuration file at %s; define [targets.%s] there (root, db-address, db-name, domain)", name, c.String("config"), name)
	}
	t, ok := cfg.Targets[name]
	if !ok {
		var known []string
		for k := range cfg.Targets {
			known = append(known, k)
		}
		have := "it defines no targets"
		if len(known) > 0 {
			have = "it defines: " + strings.Join(known, ", ")
		}
		return nil, config.Target{}, usageError("target %q is not in %s (%s); add a [targets.%s] table, or use --to full", name, c.String("config"), have, name)
	}
	return cfg, t, nil
}

// serverConfig builds a driver config from an address and a credentials
// option file ("" means unix socket authentication as this user).
func serverConfig(addr, credsFile string, plesk bool) (*mysql.Config, error) {
	a, err := dump.ParseAddress(addr)
	if err != nil {
		return nil, usageError("database address %q: %v", addr, err)
	}
	var creds dump.Credentials
	switch {
	case credsFile != "":
		creds, err = dump.ReadOptionFile(credsFile)
	case plesk:
		creds, err = dump.PleskCredentials("/etc/psa/.psa.shadow")
	}
	if err != nil {
		return nil, err
	}
	return a.Config(creds), nil
}

// targetDB is the staging database of target t, with flag overrides.
func targetDB(c *cli.Context, name string, t config.Target) (*mysql.Config, error) {
	addr, creds := t.DBAddress, t.DBCredentialsFile
	if v := c.String("db-into"); v != "" {
		addr = v
	}
	if v := c.String("db-credentials"); v != "" {
		creds = v
	}
	if addr == "" {
		return nil, nil
	}
	cfg, err := serverConfig(addr, creds, false)
	if err != nil {
		return nil, err
	}
	if t.DBName != "" {
		cfg.DBName = t.DBName
	}
	if cfg.DBName == "" {
		return nil, usageError("target %q names no database: set db-name in [targets.%s]", name, name)
	}
	return cfg, nil
}

// productionDB is the server of the configuration's first [[databases]],
// or --db-into.
func productionDB(c *cli.Context) (*mysql.Config, error) {
	cfg, err := optionalConfig(c)
	if err != nil {
		return nil, err
	}
	addr, creds, plesk := c.String("db-into"), c.String("db-credentials"), false
	if cfg != nil && len(cfg.Databases) > 0 {
		if addr == "" {
			addr = cfg.Databases[0].Address
		}
		if creds == "" {
			creds, plesk = cfg.Databases[0].CredentialsFile, cfg.Databases[0].Plesk
		}
	}
	if addr == "" {
		return nil, nil
	}
	return serverConfig(addr, creds, plesk)
}

// rewriteTarget converts a config target into the PrestaShop rewrite.
func rewriteTarget(t config.Target) (prestashop.Target, error) {
	pt := prestashop.Target{
		Domain: t.Domain, DomainSSL: t.DomainSSL, PhysicalURI: t.PhysicalURI,
		Maintenance: t.Maintenance, MaintenanceIP: strings.Join(t.MaintenanceIPs, ","),
		DisableSSL: t.DisableSSL, DisableWebservice: t.DisableWebservice, ClearSessions: t.ClearSessions,
		KeepRobots: t.KeepRobots, ExtraDomains: t.ExtraDomains, ModuleSettings: prestashop.DefaultModuleSettings(),
	}
	for id, d := range t.ShopDomains {
		n, err := strconv.Atoi(id)
		if err != nil {
			return pt, usageError("shop-domains: %q is not a shop id", id)
		}
		if pt.ShopDomains == nil {
			pt.ShopDomains = map[int]string{}
		}
		pt.ShopDomains[n] = d
	}
	for _, s := range t.Settings {
		pt.ModuleSettings = append(pt.ModuleSettings, prestashop.Setting{Name: s.Name, Value: s.Value})
	}
	return pt, nil
}

func stateDir(cfg *config.Config) string {
	if cfg != nil && cfg.StateDir != "" {
		return cfg.StateDir
	}
	return "/var/lib/shopvault"
}

func recordPath(cfg *config.Config, target string) string {
	return filepath.Join(stateDir(cfg), "restore-"+target+".json")
}

// restoreTo runs restore --to TARGET.
func restoreTo(c *cli.Context) error {
	to := c.String("to")
	switch to {
	case "dir":
		return usageError("--to dir is the default: pass --target DIR instead")
	case "full":
		return restoreFull(c)
	}
	if c.String("target") != "" {
		return usageError("--target is for a plain directory restore; the target %q has its root in the configuration", to)
	}
	cfg, t, err := targetConfig(c, to)
	if err != nil {
		return err
	}
	root := t.Root
	if root == "" {
		return usageError("target %q has no root: set root in [targets.%s]", to, to)
	}
	dbCfg, err := targetDB(c, to, t)
	if err != nil {
		return err
	}
	pt, err := rewriteTarget(t)
	if err != nil {
		return err
	}
	probeURL := c.String("probe-url")
	if probeURL == "" {
		probeURL = t.ProbeURL
	}
	ctx := c.Context
	return withSnapshot(c, readKey, snapshotRef(c), func(r *repo.Repository, sn *repo.Snapshot) error {
		var bar *progressBar
		if !c.Bool("json") {
			bar = newProgressBar(c.App.ErrWriter, "restore", sn.Stats.Bytes)
		}
		rep, err := recovery.RestoreStaging(ctx, r, sn, recovery.StagingOptions{
			Root: root, Source: c.String("source"), DB: dbCfg, Rewrite: pt,
			DropExisting: c.Bool("drop-existing"), Overwrite: c.Bool("overwrite"), IgnoreErrors: c.Bool("ignore-errors"),
			Owner: os.Geteuid() == 0 && !c.Bool("no-owner"), Workers: c.Int("workers"), Threads: c.Int("db-threads"),
			ProbeURL: probeURL, RecordPath: recordPath(cfg, to), Progress: restoreProgress{bar},
		})
		bar.finish()
		return finishRecovery(c, rep, err, "", c.Bool("json"))
	})
}

func restoreFull(c *cli.Context) error {
	ctx := c.Context
	if c.String("target") != "" {
		return usageError("--to full restores to the original paths: use --root DIR instead of --target")
	}
	root := c.String("root")
	if root == "" {
		root = "/"
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	dbCfg, err := productionDB(c)
	if err != nil {
		return err
	}
	return withSnapshot(c, readKey, snapshotRef(c), func(r *repo.Repository, sn *repo.Snapshot) error {
		if sn.DB != nil && dbCfg == nil {
			return usageError("snapshot %s holds databases (%s): pass --db-into ADDR (and --db-credentials FILE) or configure [[databases]]",
				sn.ID.Short(), strings.Join(sn.DB.Databases, ", "))
		}
		if !c.Bool("yes") {
			var dbs []string
			if sn.DB != nil {
				dbs = sn.DB.Databases
			}
			if err := confirm(c, fmt.Sprintf("restore snapshot %s of %s (%s) to its original paths under %s: %s; databases %s on %s",
				sn.ID.Short(), sn.Hostname, sn.Time.Format(time.RFC3339), root, strings.Join(sn.Paths, ", "), strings.Join(dbs, ", "), dbAddr(dbCfg))); err != nil {
				return err
			}
		}
		var bar *progressBar
		if !c.Bool("json") {
			bar = newProgressBar(c.App.ErrWriter, "restore", sn.Stats.Bytes)
		}
		rep, err := recovery.RestoreFull(ctx, r, sn, recovery.FullOptions{
			Root: root, DB: dbCfg, Overwrite: c.Bool("overwrite"), IgnoreErrors: c.Bool("ignore-errors"),
			Owner: os.Geteuid() == 0 && !c.Bool("no-owner"), Workers: c.Int("workers"), Threads: c.Int("db-threads"),
			Progress: restoreProgress{bar},
		})
		bar.finish()
		return finishRecovery(c, rep, err, "", c.Bool("json"))
	})
}

func dbAddr(cfg *mysql.Config) string {
	if cfg == nil {
		return "(none)"
	}
	return cfg.Net + "(" + cfg.Addr + ")"
}

// confirm asks on the terminal; without one it refuses (use --yes).
func confirm(c *cli.Context, what string) error {
	f, ok := c.App.Reader.(*os.File)
	if !ok || !isTerminalFile(f) {
		return usageError("refusing to %s without confirmation: stdin is not a terminal; pass --yes", what)
	}
	fmt.Fprintf(c.App.ErrWriter, "This will %s.\nExisting files and databases in the way are replaced only with --overwrite.\nType yes to continue: ", what)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}

func isTerminalFile(f *os.File) bool { return isTerminal(f) }

// finishRecovery prints the checklist (or the JSON report) and maps the
// outcome to the error main turns into the exit code. jsonFile "" with
// jsonStdout prints JSON to stdout.
func finishRecovery(c *cli.Context, rep *recovery.Report, err error, jsonFile string, jsonStdout bool) error {
	if rep != nil {
		if jsonFile != "" || jsonStdout {
			data, merr := json.MarshalIndent(rep, "", "  ")
			if merr != nil {
				return merr
			}
			data = append(data, '\n')
			if jsonFile != "" && jsonFile != "-" {
				if werr := os.WriteFile(jsonFile, data, 0o600); werr != nil {
					return fmt.Errorf("write the report: %w", werr)
				}
			} else {
				c.App.Writer.Write(data)
			}
		}
		if !jsonStdout || jsonFile != "" {
			printReport(c.App.ErrWriter, rep)
		}
	}
	if err != nil {
		if errors.Is(err, restore.ErrTargetNotEmpty) {
			return fmt.Errorf("%w (for a staging target, --overwrite restores over it)", err)
		}
		if errors.Is(err, dump.ErrNotEmpty) && !strings.Contains(err.Error(), "drop-existing") {
			return fmt.Errorf("%w: pass --drop-existing to replace its tables", err)
		}
		if rep != nil && rep.Files != nil && len(rep.Files.Damaged) > 0 && errors.Is(err, recovery.ErrFailed) && c.Bool("ignore-errors") {
			return cli.Exit(fmt.Sprintf("shopvault: %d files could not be restored (damaged repository data); everything else was restored and verified", len(rep.Files.Damaged)), exitPartial)
		}
		return err
	}
	return nil
}

func printReport(w io.Writer, rep *recovery.Report) {
	title := rep.Kind
	if rep.Verify {
		title = "verify " + title
	}
	fmt.Fprintf(w, "%s of snapshot %s (%s, %s) at %s\n", title, rep.Snapshot[:8], rep.Hostname, rep.SnapshotTime.Local().Format("2006-01-02 15:04:05"), rep.Root)
	if rep.Source != "" {
		fmt.Fprintf(w, "  shop directory in the snapshot: %s\n", rep.Source)
	}
	if f := rep.Files; f != nil && !rep.Verify {
		fmt.Fprintf(w, "  files: %d files, %d dirs, %s (%d already correct)\n", f.Files, f.Dirs, fmtBytes(f.Bytes), f.Skipped)
		for _, d := range f.Damaged {
			fmt.Fprintf(w, "  damaged: %s\n", d)
		}
	}
	for _, d := range rep.Databases {
		if !rep.Verify {
			fmt.Fprintf(w, "  database %s -> %s: %d tables, %d rows, %s in %.1fs\n", d.From, d.Into, d.Tables, d.Rows, fmtBytes(d.Bytes), d.Seconds)
		}
		if len(d.Rewritten) > 0 {
			fmt.Fprintf(w, "  tables changed by the staging rewrite on purpose: %s\n", strings.Join(d.Rewritten, ", "))
		}
	}
	if p := rep.PrestaShop; p != nil && p.Skipped != "" {
		fmt.Fprintf(w, "  PrestaShop: %s\n", p.Skipped)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", wn)
	}
	for _, ch := range rep.Checklist {
		mark := "ok  "
		if !ch.OK {
			mark = "FAIL"
		}
		line := fmt.Sprintf("  [%s] %s", mark, ch.What)
		if ch.Detail != "" && (!ch.OK || strings.HasPrefix(ch.What, "database")) {
			line += " (" + ch.Detail + ")"
		}
		fmt.Fprintln(w, line)
	}
	if rep.Kind == recovery.KindDrill {
		fmt.Fprintf(w, "  RTO %s (restore, load and verification), RPO %s (snapshot age)\n",
			fmtDuration(time.Duration(rep.RTOSeconds*float64(time.Second))), fmtDuration(time.Duration(rep.RPOSeconds*float64(time.Second))))
		if s := rep.Scratch; s != nil {
			if s.Kept {
				fmt.Fprintf(w, "  scratch kept: %s, database %s\n", s.Dir, s.Database)
			} else if s.Error != "" {
				fmt.Fprintf(w, "  warning: scratch not fully removed: %s\n", s.Error)
			}
		}
	} else {
		fmt.Fprintf(w, "  took %s\n", fmtDuration(time.Duration(rep.RTOSeconds*float64(time.Second))))
	}
	if rep.OK() {
		fmt.Fprintf(w, "all %d checks passed\n", len(rep.Checklist))
	} else {
		fmt.Fprintf(w, "%d of %d checks FAILED\n", len(rep.Failed()), len(rep.Checklist))
	}
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-check an existing restore against its snapshot: files, tables and the staging rewrite (needs the restore key)",
		ArgsUsage: "[SNAPSHOT|latest]",
		Flags: withRepoFlags(
			&cli.StringFlag{Name: "to", Usage: "the restore to check: 'full' or a target of the config (e.g. staging)"},
			&cli.StringFlag{Name: "target", Usage: "a plain directory restore (restore --target DIR) to check"},
			&cli.StringFlag{Name: "root", Usage: "--to full: the --root the restore used"},
			&cli.StringFlag{Name: "db-into", Usage: "database server the restore loaded into (default: the configured one)"},
			&cli.StringFlag{Name: "db-credentials", Usage: "option file with the database server's credentials", EnvVars: []string{"SHOPVAULT_DB_CREDENTIALS"}},
			&cli.StringFlag{Name: "probe-url", Usage: "staging: also fetch this URL (200 and the shop's name)"},
			&cli.BoolFlag{Name: "no-owner", Usage: "do not check file owners"},
			&cli.IntFlag{Name: "workers", Usage: "files checked in parallel", Value: 4},
			&cli.StringFlag{Name: "json", Usage: "write the report as JSON to this file ('-': stdout)"},
		),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			o := recovery.VerifyOptions{Owner: os.Geteuid() == 0 && !c.Bool("no-owner"), Workers: c.Int("workers"), ProbeURL: c.String("probe-url")}
			to := c.String("to")
			switch {
			case c.String("target") != "" && to != "":
				return usageError("give either --to or --target")
			case c.String("target") != "":
				o.Kind, o.Root = recovery.KindDir, c.String("target")
			case to == "full":
				o.Kind, o.Root = recovery.KindFull, c.String("root")
				db, err := productionDB(c)
				if err != nil {
					return err
				}
				o.DB = db
			case to != "":
				cfg, t, err := targetConfig(c, to)
				if err != nil {
					return err
				}
				rec, err := recovery.ReadRecord(recordPath(cfg, to))
				if err != nil {
					return err
				}
				o.Kind, o.Record = recovery.KindStaging, rec
				if o.DB, err = targetDB(c, to, t); err != nil {
					return err
				}
				if o.DB != nil && rec.Database != "" {
					o.DB.DBName = rec.Database
				}
				if o.ProbeURL == "" {
					o.ProbeURL = t.ProbeURL
				}
			default:
				return usageError("what to verify? pass --to staging|full or --target DIR")
			}
			return withRepo(c, readKey, noLock, func(r *repo.Repository) error {
				ref := snapshotRef(c)
				if o.Record != nil && c.NArg() == 0 {
					ref = o.Record.Snapshot
				}
				sn, err := r.FindSnapshot(ctx, ref)
				if err != nil {
					return err
				}
				rep, err := recovery.VerifyTarget(ctx, r, sn, o)
				return finishRecovery(c, rep, err, c.String("json"), c.String("json") == "-")
			})
		},
	}
}

func drillCommand() *cli.Command {
	return &cli.Command{
		Name:  "drill",
		Usage: "rehearse a disaster recovery: restore a snapshot into scratch and a throwaway database, verify everything, report RTO/RPO (needs the restore key)",
		Description: "Restores every file of the snapshot (latest by default) into a scratch directory and every database into a throwaway\n" +
			"database (shopvault_drill_<random>) on the configured server, proves each file's content and metadata and each table's\n" +
			"row count and digest, rehearses the PrestaShop staging rewrite, and records the verification in the repository\n" +
			"(retention's keep-min-verified). Exits non-zero on any failure. Scratch is removed unless --keep.",
		ArgsUsage: "[SNAPSHOT|latest]",
		Flags: withRepoFlags(
			&cli.StringFlag{Name: "json", Usage: "write the report as JSON to this file ('-': stdout)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the scratch directory and databases for inspection"},
			&cli.StringFlag{Name: "db-into", Usage: "database server for the throwaway databases (default: the drill target's, else the configured [[databases]] server)"},
			&cli.StringFlag{Name: "db-credentials", Usage: "option file with that server's credentials", EnvVars: []string{"SHOPVAULT_DB_CREDENTIALS"}},
			&cli.StringFlag{Name: "scratch", Usage: "directory to make the scratch directory in (default: the system's temporary directory)"},
			&cli.StringFlag{Name: "source", Usage: "the shop's directory in the snapshot (default: found by its app/config/parameters.php)"},
			&cli.BoolFlag{Name: "no-owner", Usage: "do not restore file owners"},
			&cli.IntFlag{Name: "workers", Usage: "packs read in parallel", Value: 4},
			&cli.IntFlag{Name: "db-threads", Usage: "tables loaded in parallel", Value: dump.DefaultLoadThreads},
		),
		Action: func(c *cli.Context) error {
			tuneGCForRestore(c)
			ctx := c.Context
			cfg, err := optionalConfig(c)
			if err != nil {
				return err
			}
			o := recovery.DrillOptions{Scratch: c.String("scratch"), Keep: c.Bool("keep"), Source: c.String("source"),
				Owner: os.Geteuid() == 0 && !c.Bool("no-owner"), Workers: c.Int("workers"), Threads: c.Int("db-threads")}
			o.Hostname, _ = os.Hostname()
			if cfg != nil && cfg.Schedule.DrillTarget != "" {
				name := cfg.Schedule.DrillTarget
				_, t, err := targetConfig(c, name)
				if err != nil {
					return err
				}
				if o.Rewrite, err = rewriteTarget(t); err != nil {
					return err
				}
				t.DBName = "" // the drill always uses a throwaway database
				if t.DBAddress != "" || c.String("db-into") != "" {
					addr, creds := t.DBAddress, t.DBCredentialsFile
					if v := c.String("db-into"); v != "" {
						addr = v
					}
					if v := c.String("db-credentials"); v != "" {
						creds = v
					}
					if o.DB, err = serverConfig(addr, creds, false); err != nil {
						return err
					}
				}
				if o.Scratch == "" && t.Root != "" {
					if err := os.MkdirAll(t.Root, 0o700); err != nil {
						return fmt.Errorf("drill target %s: %w", name, err)
					}
					o.Scratch = t.Root
				}
			}
			if o.DB == nil {
				if o.DB, err = productionDB(c); err != nil {
					return err
				}
			}
			return withRepo(c, readKey, sharedLock, func(r *repo.Repository) error {
				sn, err := r.FindSnapshot(ctx, snapshotRef(c))
				if err != nil {
					return err
				}
				if sn.DB != nil && o.DB == nil {
					return usageError("snapshot %s holds databases: pass --db-into ADDR (and --db-credentials FILE) for the throwaway database, or configure [[databases]]", sn.ID.Short())
				}
				var bar *progressBar
				if c.String("json") != "-" {
					bar = newProgressBar(c.App.ErrWriter, "drill", sn.Stats.Bytes)
				}
				o.Progress = restoreProgress{bar}
				rep, err := recovery.Drill(ctx, r, sn, o)
				bar.finish()
				if err != nil && errors.Is(err, recovery.ErrFailed) {
					err = fmt.Errorf("drill FAILED: %w", err)
				}
				return finishRecovery(c, rep, err, c.String("json"), c.String("json") == "-")
			})
		},
	}
}
