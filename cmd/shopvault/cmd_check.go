package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/repo"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "verify the repository: structure, index, pack hashes; --read-data decrypts every blob (restore key)",
		Flags: withRepoFlags(
			&cli.BoolFlag{Name: "read-data", Usage: "decrypt and verify every blob (needs the restore key)"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON report"},
		),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			need := anyKey
			if c.Bool("read-data") {
				need = readKey
			}
			start := time.Now()
			return withRepo(c, need, sharedLock, func(r *repo.Repository) error {
				var total int64
				for _, s := range r.Index().Packs() {
					total += s
				}
				var bar *progressBar
				if !c.Bool("json") {
					bar = newProgressBar(c.App.ErrWriter, "check", total)
				}
				res, err := r.Check(ctx, repo.CheckOptions{ReadData: c.Bool("read-data"), PackDone: func(n int64) { bar.add(1, n) }})
				bar.finish()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					probs := []string{}
					for _, p := range res.Problems {
						probs = append(probs, p.Error())
					}
					b, _ := json.Marshal(map[string]any{"ok": res.OK(), "snapshots": res.Snapshots, "packs": res.Packs, "blobs": res.Blobs,
						"read_data": c.Bool("read-data"), "problems": probs, "unreferenced_packs": len(res.Unreferenced), "duration_seconds": time.Since(start).Seconds()})
					fmt.Fprintln(c.App.Writer, string(b))
				} else {
					w := c.App.ErrWriter
					what := "structure and pack hashes"
					if c.Bool("read-data") {
						what = "structure, pack hashes and every blob's content"
					}
					fmt.Fprintf(w, "checked %s: %d snapshots, %d packs (%s), %d blobs\n", what, res.Snapshots, res.Packs, fmtBytes(res.PackBytes), res.Blobs)
					if n := len(res.Unreferenced); n > 0 {
						fmt.Fprintf(w, "%d packs are not referenced by the index (left by an interrupted backup; 'shopvault prune' removes them)\n", n)
					}
					for _, p := range res.Problems {
						fmt.Fprintf(w, "error: %v\n", p)
					}
					if res.OK() {
						fmt.Fprintln(w, "no errors were found")
					}
				}
				if !res.OK() {
					return fmt.Errorf("check found %d problems", len(res.Problems))
				}
				return nil
			})
		},
	}
}

func unlockCommand() *cli.Command {
	return &cli.Command{
		Name:  "unlock",
		Usage: "remove stale locks (of dead processes on this host or with an expired lease); --all removes every lock",
		Flags: withRepoFlags(&cli.BoolFlag{Name: "all", Usage: "remove all locks, also those of running processes"}),
		Action: func(c *cli.Context) error {
			return withRepo(c, anyKey, noLock, func(r *repo.Repository) error {
				removed, err := r.RemoveLocks(c.Context, c.Bool("all"), time.Now())
				fmt.Fprintf(c.App.ErrWriter, "removed %d locks\n", len(removed))
				return err
			})
		},
	}
}
