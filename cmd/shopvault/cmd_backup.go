package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/repo"
)

// backupSummary is the one-line JSON summary of a backup run.
type backupSummary struct {
	Command     string   `json:"command"`
	Result      string   `json:"result"` // ok, partial, failed
	Snapshot    string   `json:"snapshot,omitempty"`
	Files       int64    `json:"files"`
	Dirs        int64    `json:"dirs"`
	Bytes       int64    `json:"bytes"`
	BytesRead   int64    `json:"bytes_read"`
	BytesAdded  int64    `json:"bytes_added"`
	StoredAdded int64    `json:"stored_added"`
	Errors      int64    `json:"errors"`
	Duration    float64  `json:"duration_seconds"`
	Warnings    []string `json:"warnings,omitempty"`
	Error       string   `json:"error,omitempty"`
}

type backupProgress struct{ bar *progressBar }

func (p backupProgress) FileDone(path string, size, read int64) { p.bar.add(1, size) }
func (p backupProgress) Warn(path string, err error) {
	p.bar.warn(fmt.Sprintf("warning: %s: %v", path, err))
}

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "back up paths (and databases) into one snapshot",
		ArgsUsage: "PATH...",
		Flags: withRepoFlags(append([]cli.Flag{
			&cli.StringSliceFlag{Name: "exclude", Aliases: []string{"e"}, Usage: "exclude paths matching this glob (repeatable); 'var/cache' matches any path ending so, '/abs/path' only that one"},
			&cli.StringSliceFlag{Name: "exclude-file", Usage: "read exclude patterns from this file, one per line"},
			&cli.BoolFlag{Name: "exclude-caches", Usage: "exclude directories that hold a CACHEDIR.TAG"},
			&cli.BoolFlag{Name: "no-default-excludes", Usage: "do not exclude PrestaShop's caches (var/cache, cache/smarty/compile, cache/smarty/cache, cache/cachefs, img/tmp)"},
			&cli.StringSliceFlag{Name: "tag", Usage: "tag the snapshot (repeatable)"},
			&cli.StringFlag{Name: "host", Usage: "host name recorded in the snapshot (default: this machine's)"},
			&cli.StringFlag{Name: "cache-dir", Usage: "change cache directory", EnvVars: []string{"SHOPVAULT_CACHE_DIR"}, Value: defaultCacheDir()},
			&cli.BoolFlag{Name: "no-cache", Usage: "read every file even if unchanged"},
			&cli.IntFlag{Name: "workers", Usage: "files read and chunked in parallel", Value: 2},
			&cli.BoolFlag{Name: "json", Usage: "print a one-line JSON summary on stdout"},
		}, dbBackupFlags()...)...),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			start := time.Now()
			excludes := slices.Clone(c.StringSlice("exclude"))
			for _, f := range c.StringSlice("exclude-file") {
				pats, err := backup.ReadExcludeFile(f)
				if err != nil {
					return err
				}
				excludes = append(excludes, pats...)
			}
			if !c.Bool("no-default-excludes") {
				excludes = append(excludes, backup.PrestaShopExcludes...)
			}
			dbSource, err := dbSourceFromFlags(c)
			if err != nil {
				return err
			}
			if c.NArg() == 0 && dbSource == nil {
				return usageError("nothing to back up: give one or more paths (and/or --db)")
			}
			return withRepo(c, anyKey, sharedLock, func(r *repo.Repository) error {
				// A full Storage Box is a clear error before reading anything.
				if sc, ok := r.Backend().(interface {
					CheckSpace(context.Context, uint64) error
				}); ok {
					if err := sc.CheckSpace(ctx, 2*uint64(r.Config().PackSize)); err != nil {
						return err
					}
				}

				var expected int64
				if sns, _ := r.Snapshots(ctx); len(sns) > 0 {
					expected = sns[len(sns)-1].Stats.Bytes
				}
				var bar *progressBar
				if !c.Bool("json") {
					bar = newProgressBar(c.App.ErrWriter, "backup", expected)
				}
				cacheDir := c.String("cache-dir")
				if c.Bool("no-cache") {
					cacheDir = ""
				}
				res, err := backup.Run(ctx, r, backup.Options{
					Paths: c.Args().Slice(), Excludes: excludes, ExcludeCaches: c.Bool("exclude-caches"),
					Tags: c.StringSlice("tag"), Hostname: c.String("host"), CacheDir: cacheDir,
					Workers: c.Int("workers"), Uploaders: uploaders(c), Progress: backupProgress{bar}, DB: dbSource,
				})
				bar.finish()
				sum := backupSummary{Command: "backup", Result: "ok", Duration: time.Since(start).Seconds()}
				if res != nil {
					st := res.Snapshot.Stats
					sum.Snapshot = res.Snapshot.ID.String()
					sum.Files, sum.Dirs, sum.Bytes, sum.BytesRead = st.Files, st.Dirs, st.Bytes, st.BytesRead
					sum.BytesAdded, sum.StoredAdded, sum.Errors = st.BytesAdded, st.StoredAdded, st.Errors
					sum.Warnings = res.Warnings
				}
				switch {
				case errors.Is(err, backup.ErrPartial):
					sum.Result = "partial"
				case err != nil:
					sum.Result = "failed"
					sum.Error = err.Error()
				}
				if c.Bool("json") {
					line, _ := json.Marshal(sum)
					fmt.Fprintln(c.App.Writer, string(line))
				} else if res != nil {
					w := c.App.ErrWriter
					for _, wmsg := range res.Warnings {
						if bar == nil {
							fmt.Fprintf(w, "warning: %s\n", wmsg)
						}
					}
					fmt.Fprintf(w, "snapshot %s saved: %d files, %s; read %s, added %s (%s stored) in %s\n",
						res.Snapshot.ID.Short(), sum.Files, fmtBytes(sum.Bytes), fmtBytes(sum.BytesRead),
						fmtBytes(sum.BytesAdded), fmtBytes(sum.StoredAdded), fmtDuration(time.Since(start)))
					if res.Snapshot.DB != nil {
						fmt.Fprintf(w, "databases %v dumped at one consistent point (%s)\n", res.Snapshot.DB.Databases, res.Snapshot.DB.Method)
					}
				}
				return err
			})
		},
	}
}

func uploaders(c *cli.Context) int {
	loc := c.String("repo")
	if isSFTP(loc) {
		n := c.Int("connections")
		if n < 1 {
			n = 4
		}
		return n
	}
	return 2
}

// snapshotRef resolves the first argument (default "latest").
func snapshotRef(c *cli.Context) string {
	if c.NArg() > 0 {
		return c.Args().First()
	}
	return "latest"
}
