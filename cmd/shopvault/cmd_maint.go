package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/config"
	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/schedule"
)

func policyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "keep-last", Usage: "keep the N newest snapshots"},
		&cli.IntFlag{Name: "keep-hourly", Usage: "keep the newest snapshot of each of the N newest hours"},
		&cli.IntFlag{Name: "keep-daily", Usage: "keep the newest snapshot of each of the N newest days"},
		&cli.IntFlag{Name: "keep-weekly", Usage: "keep the newest snapshot of each of the N newest ISO weeks"},
		&cli.IntFlag{Name: "keep-monthly", Usage: "keep the newest snapshot of each of the N newest months"},
		&cli.IntFlag{Name: "keep-yearly", Usage: "keep the newest snapshot of each of the N newest years"},
		&cli.DurationFlag{Name: "keep-within", Usage: "keep every snapshot within this duration of the newest"},
		&cli.StringSliceFlag{Name: "keep-tag", Usage: "keep snapshots with this tag (repeatable)"},
		&cli.IntFlag{Name: "keep-min-verified", Usage: "keep at least the N newest snapshots a drill verified"},
	}
}

func policyFromFlags(c *cli.Context) schedule.Policy {
	p := schedule.Policy{
		Last: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"), Weekly: c.Int("keep-weekly"),
		Monthly: c.Int("keep-monthly"), Yearly: c.Int("keep-yearly"), Within: c.Duration("keep-within"),
		Tags: c.StringSlice("keep-tag"), MinVerified: c.Int("keep-min-verified"),
	}
	if p.Empty() {
		if cfg, _ := optionalConfig(c); cfg != nil {
			return policyFromConfig(cfg.Retention)
		}
	}
	return p
}

func policyFromConfig(r config.Retention) schedule.Policy {
	return schedule.Policy{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly,
		Monthly: r.KeepMonthly, Yearly: r.KeepYearly, Within: r.KeepWithin, Tags: r.KeepTags, MinVerified: r.KeepMinVerified}
}

// forget removes snapshots by policy; it returns the removed ones.
func forget(ctx context.Context, r *repo.Repository, p schedule.Policy, dryRun bool, w func(string, ...any)) (int, error) {
	sns, err := r.Snapshots(ctx)
	if err != nil {
		return 0, fmt.Errorf("forget needs every snapshot readable: %w", err)
	}
	if p.Empty() {
		return 0, errors.New("no retention policy: give --keep-* flags or a [retention] section in the configuration")
	}
	verified, err := r.Verifications(ctx)
	if err != nil {
		return 0, err
	}
	byID := map[string]*repo.Snapshot{}
	var in []schedule.Snapshot
	for _, s := range sns {
		byID[s.ID.String()] = s
		_, ok := verified[s.ID]
		in = append(in, schedule.Snapshot{ID: s.ID.String(), Time: s.Time, StoredTime: s.StoredTime, Host: s.Hostname, Tags: s.Tags, Verified: ok})
	}
	keep, remove := schedule.ApplyPolicy(in, p, time.Now())
	for _, d := range keep {
		w("keep   %s  %s  %s", d.ID[:8], d.Time.Local().Format("2006-01-02 15:04"), strings.Join(d.Reasons, ", "))
	}
	for _, d := range remove {
		verb := "remove"
		if dryRun {
			verb = "would remove"
		}
		w("%s %s  %s", verb, d.ID[:8], d.Time.Local().Format("2006-01-02 15:04"))
		if !dryRun {
			if err := r.RemoveSnapshot(ctx, byID[d.ID]); err != nil {
				return 0, err
			}
		}
	}
	return len(remove), nil
}

func forgetCommand() *cli.Command {
	return &cli.Command{
		Name:  "forget",
		Usage: "remove snapshots by retention policy (restic's --keep-* semantics); a snapshot whose time disagrees with the storage's is always kept",
		Flags: withRepoFlags(append(policyFlags(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only show what would be removed and why each kept snapshot is kept"},
			&cli.BoolFlag{Name: "prune", Usage: "prune unused packs afterwards; with the restore key also rewrite packs that are mostly unused (as 'prune --repack')"},
		)...),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			return withRepo(c, anyKey, exclusiveLock, func(r *repo.Repository) error {
				n, err := forget(ctx, r, policyFromFlags(c), c.Bool("dry-run"), func(f string, a ...any) { fmt.Fprintf(c.App.Writer, f+"\n", a...) })
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.ErrWriter, "%d snapshots removed\n", n)
				if c.Bool("prune") && !c.Bool("dry-run") {
					// The host key cannot read packs, so only the restore
					// key can repack (what restic's prune always does).
					return prune(ctx, c, r, repo.PruneOptions{Repack: r.CanRead(), RepackThreshold: repo.DefaultRepackThreshold})
				}
				return nil
			})
		},
	}
}

func prune(ctx context.Context, c *cli.Context, r *repo.Repository, o repo.PruneOptions) error {
	res, err := r.Prune(ctx, o)
	if err != nil {
		return err
	}
	// Uploads that a killed client never finished (SFTP leaves temporary files).
	if tr, ok := r.Backend().(interface {
		RemoveStaleTemp(context.Context, time.Duration) (int, error)
	}); ok && !o.DryRun {
		if n, err := tr.RemoveStaleTemp(ctx, 24*time.Hour); err != nil {
			warnf(c, "warning: removing stale temporary files: %v", err)
		} else if n > 0 {
			warnf(c, "removed %d temporary files of interrupted uploads", n)
		}
	}
	verb := "deleted"
	if o.DryRun {
		verb = "would delete"
	}
	fmt.Fprintf(c.App.ErrWriter, "prune: %s %d packs (%s, %d left by interrupted backups), repacked %d, kept %d (%s unused inside them)\n",
		verb, res.PacksDeleted, fmtBytes(res.BytesDeleted), res.Unreferenced, res.PacksRepacked, res.PacksKept, fmtBytes(res.UnusedKept))
	return nil
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete packs no snapshot uses (host key); --repack also rewrites partly used packs (restore key)",
		Flags: withRepoFlags(
			&cli.BoolFlag{Name: "repack", Usage: "rewrite packs that are partly unused (needs the restore key)"},
			&cli.Float64Flag{Name: "repack-threshold", Usage: "unused share of a pack that makes it worth repacking", Value: repo.DefaultRepackThreshold},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only show what would be deleted"},
		),
		Action: func(c *cli.Context) error {
			need := anyKey
			if c.Bool("repack") {
				need = readKey
			}
			return withRepo(c, need, exclusiveLock, func(r *repo.Repository) error {
				return prune(c.Context, c, r, repo.PruneOptions{Repack: c.Bool("repack"), RepackThreshold: c.Float64("repack-threshold"), DryRun: c.Bool("dry-run")})
			})
		},
	}
}

// runHooks runs hook commands in order, each bounded by its timeout.
func runHooks(ctx context.Context, hooks []config.Hook, c *cli.Context) error {
	for _, h := range hooks {
		if len(h.Command) == 0 {
			continue
		}
		timeout := h.Timeout
		if timeout <= 0 {
			timeout = 5 * time.Minute
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(hctx, h.Command[0], h.Command[1:]...)
		cmd.Stdout, cmd.Stderr = c.App.ErrWriter, c.App.ErrWriter
		err := cmd.Run()
		cancel()
		if err != nil {
			return fmt.Errorf("hook %q: %w", strings.Join(h.Command, " "), err)
		}
	}
	return nil
}

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "what the nightly timer runs: hooks, backup of every configured source and database, forget by policy, prune",
		Flags: withRepoFlags(&cli.BoolFlag{Name: "no-prune", Usage: "skip forget and prune"}),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			cfg, err := optionalConfig(c)
			if err != nil {
				return err
			}
			if cfg == nil {
				return fmt.Errorf("no configuration file at %s: 'shopvault run' needs one (start from 'shopvault config example')", c.String("config"))
			}
			client := &http.Client{}
			opsRunStart(ctx, cfg, client, c.App.ErrWriter)
			start := time.Now()
			sum := schedule.RunSummary{Command: "run", Start: start, Result: schedule.ResultOK}
			err = runNightly(ctx, c, cfg, &sum)
			sum.Duration = time.Since(start)
			switch {
			case errors.Is(err, backup.ErrPartial):
				sum.Result, sum.Message = schedule.ResultPartial, err.Error()
			case err != nil:
				sum.Result, sum.Message = schedule.ResultFailed, err.Error()
			}
			opsRecordRun(context.WithoutCancel(ctx), cfg, client, sum, c.App.Writer, c.App.ErrWriter)
			return err
		},
	}
}

func runNightly(ctx context.Context, c *cli.Context, cfg *config.Config, sum *schedule.RunSummary) error {
	if err := runHooks(ctx, cfg.Hooks.Before, c); err != nil {
		return err
	}
	r, err := openRepo(ctx, c, anyKey)
	if err != nil {
		return err
	}
	defer r.Backend().Close()
	var paths, excludes []string
	excludeCaches := false
	for _, s := range cfg.Sources {
		paths = append(paths, s.Paths...)
		excludes = append(excludes, s.Excludes...)
		excludeCaches = excludeCaches || s.ExcludeCaches
	}
	excludes = append(excludes, backup.PrestaShopExcludes...)
	var db *backup.DBSource
	if len(cfg.Databases) > 0 {
		d := cfg.Databases[0]
		if len(cfg.Databases) > 1 {
			return errors.New("several [[databases]] servers are not supported yet: list the databases of one server in databases = [...]")
		}
		addr, err := dump.ParseAddress(d.Address)
		if err != nil {
			return fmt.Errorf("databases[0].address: %w", err)
		}
		var creds dump.Credentials
		switch {
		case d.Plesk:
			creds, err = dump.PleskCredentials("/etc/psa/.psa.shadow")
		case d.CredentialsFile != "":
			creds, err = dump.ReadOptionFile(d.CredentialsFile)
		}
		if err != nil {
			return err
		}
		db = &backup.DBSource{Config: addr.Config(creds), Options: dump.Options{Databases: d.Databases, Threads: d.Threads, LockTimeout: d.LockTimeout, LockNonTransactional: d.LockNontransactional}}
	}
	lock, err := lockRepo(ctx, c, r, false)
	if err != nil {
		return err
	}
	if err := r.ReloadIndex(ctx); err != nil {
		lock.Unlock(ctx)
		return err
	}
	res, berr := backup.Run(ctx, r, backup.Options{Paths: paths, Excludes: excludes, ExcludeCaches: excludeCaches, CacheDir: cfg.CacheDir, Uploaders: uploaders(c), DB: db})
	lock.Unlock(ctx)
	if res != nil {
		st := res.Snapshot.Stats
		sum.Snapshot, sum.Files, sum.BytesRead, sum.BytesAdded, sum.Errors = res.Snapshot.ID.String(), st.Files, st.BytesRead, st.BytesAdded, st.Errors
		for _, w := range res.Warnings {
			warnf(c, "warning: %s", w)
		}
	}
	if berr != nil && !errors.Is(berr, backup.ErrPartial) {
		return berr
	}
	if !c.Bool("no-prune") {
		if p := policyFromConfig(cfg.Retention); !p.Empty() {
			xlock, err := lockRepo(ctx, c, r, true)
			if err != nil {
				return err
			}
			_, err = forget(ctx, r, p, false, func(f string, a ...any) { fmt.Fprintf(c.App.ErrWriter, f+"\n", a...) })
			if err == nil {
				err = prune(ctx, c, r, repo.PruneOptions{})
			}
			xlock.Unlock(ctx)
			if err != nil {
				return err
			}
		}
	}
	if err := runHooks(ctx, cfg.Hooks.After, c); err != nil {
		return err
	}
	return berr
}
