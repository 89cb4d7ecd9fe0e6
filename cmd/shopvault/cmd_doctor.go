package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backend/sftp"
)

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check a Storage Box end to end before the first backup: host key, auth, write/fsync/rename, space, sessions, speed",
		Flags: withRepoFlags(),
		Action: func(c *cli.Context) error {
			loc, err := repoLocation(c)
			if err != nil {
				return err
			}
			if !isSFTP(loc) {
				return usageError("doctor checks SFTP repositories: pass --repo sftp://user@host/path")
			}
			cfg, err := sftpConfig(c, loc)
			if err != nil {
				return err
			}
			failed := 0
			err = sftp.Doctor(c.Context, cfg, func(ch sftp.Check) {
				mark := "ok  "
				if !ch.OK {
					mark = "FAIL"
					failed++
				}
				fmt.Fprintf(c.App.Writer, "[%s] %-22s %s\n", mark, ch.Name, ch.Detail)
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d checks failed", failed)
			}
			fmt.Fprintln(c.App.Writer, "verdict: ready for backups")
			return nil
		},
	}
}
