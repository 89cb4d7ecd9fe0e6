package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore"
)

type restoreProgress struct{ bar *progressBar }

func restoreFlags() []cli.Flag {
	return append(withRepoFlags(
		&cli.StringFlag{Name: "target", Aliases: []string{"t"}, Usage: "directory to restore into"},
		&cli.StringSliceFlag{Name: "include", Aliases: []string{"i"}, Usage: "restore only this snapshot path (repeatable), e.g. /var/www/shop/config or /db/prestashop"},
		&cli.StringSliceFlag{Name: "exclude", Aliases: []string{"e"}, Usage: "skip paths matching this glob (repeatable)"},
		&cli.BoolFlag{Name: "overwrite", Usage: "restore into a non-empty target; files already correct are kept (resume)"},
		&cli.BoolFlag{Name: "ignore-errors", Usage: "continue past damaged data and list the damaged files"},
		&cli.BoolFlag{Name: "no-owner", Usage: "do not restore file owners (default: restore them when running as root)"},
		&cli.BoolFlag{Name: "no-verify", Usage: "skip re-reading the restored files against the snapshot"},
		&cli.IntFlag{Name: "workers", Usage: "packs read in parallel", Value: 4},
		&cli.BoolFlag{Name: "json", Usage: "print a JSON report"},
	), recoveryRestoreFlags()...)
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a snapshot into a directory (--target), a staging clone (--to staging) or the original server (--to full), and verify it (needs the restore key)",
		ArgsUsage: "SNAPSHOT|latest",
		Flags:     restoreFlags(),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			tuneGCForRestore(c)
			if c.String("to") != "" {
				return restoreTo(c)
			}
			target := c.String("target")
			if target == "" {
				return usageError("no target: pass --target DIR, --to staging (a target of the config) or --to full")
			}
			start := time.Now()
			return withSnapshot(c, readKey, snapshotRef(c), func(r *repo.Repository, sn *repo.Snapshot) error {
				var bar *progressBar
				if !c.Bool("json") {
					bar = newProgressBar(c.App.ErrWriter, "restore", sn.Stats.Bytes)
				}
				o := restore.Options{
					Target: target, Include: c.StringSlice("include"), Exclude: c.StringSlice("exclude"),
					Overwrite: c.Bool("overwrite"), IgnoreErrors: c.Bool("ignore-errors"), Workers: c.Int("workers"),
					Owner: os.Geteuid() == 0 && !c.Bool("no-owner"), Progress: restoreProgress{bar},
					Verify: !c.Bool("no-verify"),
				}
				res, err := restore.Restore(ctx, r, sn, o)
				bar.finish()
				if err != nil {
					return err
				}
				report := map[string]any{"snapshot": sn.ID.String(), "target": target, "files": res.Files, "dirs": res.Dirs,
					"bytes": res.Bytes, "skipped": res.Skipped, "damaged": res.Damaged}
				vres := res.Verify
				if vres != nil {
					probs := []string{}
					for _, p := range vres.Problems {
						probs = append(probs, p.Path+": "+p.What)
					}
					report["verified_files"], report["verify_problems"] = vres.Files, probs
				}
				report["duration_seconds"] = time.Since(start).Seconds()
				if c.Bool("json") {
					b, _ := json.Marshal(report)
					fmt.Fprintln(c.App.Writer, string(b))
				} else {
					w := c.App.ErrWriter
					fmt.Fprintf(w, "restored snapshot %s into %s: %d files, %d dirs, %s in %s\n", sn.ID.Short(), target, res.Files, res.Dirs, fmtBytes(res.Bytes), fmtDuration(time.Since(start)))
					if res.Skipped > 0 {
						fmt.Fprintf(w, "%d files were already correct and kept\n", res.Skipped)
					}
					for _, d := range res.Damaged {
						fmt.Fprintf(w, "damaged: %s\n", d)
					}
					if vres != nil {
						for _, p := range vres.Problems {
							fmt.Fprintf(w, "verify: %s: %s\n", p.Path, p.What)
						}
						if len(vres.Problems) == 0 {
							fmt.Fprintf(w, "verified: %d files match the snapshot (content hashes and metadata)\n", vres.Files)
						}
					}
				}
				if len(res.Damaged) > 0 {
					return fmt.Errorf("%d files could not be restored correctly", len(res.Damaged))
				}
				if vres != nil && len(vres.Problems) > 0 {
					return fmt.Errorf("verification found %d problems", len(vres.Problems))
				}
				return nil
			})
		},
	}
}

func (p restoreProgress) Start(totalFiles, totalBytes int64) {}
func (p restoreProgress) FileDone(path string, bytes int64)  { p.bar.add(1, bytes) }
func (p restoreProgress) Error(path string, err error) {
	p.bar.warn(fmt.Sprintf("warning: %s: %v", path, err))
}
