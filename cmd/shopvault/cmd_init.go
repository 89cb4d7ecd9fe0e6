package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/repo"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a repository with a host key (writes backups) and a restore key (reads them)",
		Description: `Creates the repository and two keys. The host key stays on the server
(mode 0600); it can back up, list snapshots, check and prune, but it cannot
decrypt any backup. The restore key reads everything: move it OFF the server
(password manager, DR laptop, CI secret) and delete the local copy.`,
		Flags: withRepoFlags(
			&cli.BoolFlag{Name: "single-key", Usage: "one key that is both host and restore key (restic's model; a stolen server then leaks every backup)"},
		),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			hostOut := c.String("host-key")
			restoreOut := c.String("restore-key")
			if hostOut == "" && !c.Bool("single-key") {
				if os.Geteuid() == 0 {
					hostOut = "/etc/shopvault/host.key"
				} else {
					hostOut = "host.key"
				}
			}
			for _, p := range []string{hostOut, restoreOut} {
				if p == "" {
					continue
				}
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("key file %s already exists: move it away or choose another path (--host-key / --restore-key)", p)
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					return fmt.Errorf("key directory: %w", err)
				}
			}
			be, err := openBackend(ctx, c, true, nil)
			if err != nil {
				return err
			}
			defer be.Close()
			hostKey, restoreKey, err := repo.Init(ctx, be, repo.InitOptions{SingleKey: c.Bool("single-key")})
			if err != nil {
				return err
			}
			if restoreOut == "" {
				restoreOut = fmt.Sprintf("shopvault-restore-%s.key", restoreKey.Repository[:8])
			}
			w := c.App.ErrWriter
			fmt.Fprintf(w, "created repository %s at %s\n", restoreKey.Repository[:8], be.Location())
			if hostKey != nil {
				if err := repo.WriteKeyFile(hostOut, hostKey); err != nil {
					return fmt.Errorf("%w (the repository exists; its restore key is printed below)", err)
				}
				abs, _ := filepath.Abs(hostOut)
				fmt.Fprintf(w, "host key:    %s (0600). It writes backups and cannot read them: keep it on this server.\n", abs)
			}
			if err := repo.WriteKeyFile(restoreOut, restoreKey); err != nil {
				// Never lose the only key that reads the backups.
				fmt.Fprintf(w, "could not write the restore key (%v); here it is, store it now:\n%s", err, restoreKey.Marshal())
				return err
			}
			abs, _ := filepath.Abs(restoreOut)
			if hostKey != nil {
				fmt.Fprintf(w, "restore key: %s (0600). It READS every backup.\n", abs)
				fmt.Fprintf(w, "\n  Move the restore key OFF this server now (password manager, DR laptop, CI secret),\n  then delete it here: a stolen server must not hold it. Without it no backup can be restored.\n")
			} else {
				fmt.Fprintf(w, "key: %s (0600). Single-key mode: this key writes AND reads every backup.\n", abs)
			}
			return nil
		},
	}
}
