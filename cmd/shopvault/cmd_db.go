package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/recovery"
	"github.com/shopvault/shopvault/repo"
)

func dbBackupFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "db", Usage: "dump MariaDB into the snapshot: address without credentials, e.g. 'unix(/run/mysqld/mysqld.sock)/prestashop'"},
		&cli.StringFlag{Name: "db-credentials", Usage: "option file with the client credentials (user, password[, host, socket, port]), like /root/.my.cnf", EnvVars: []string{"SHOPVAULT_DB_CREDENTIALS"}},
		&cli.BoolFlag{Name: "db-plesk", Usage: "use Plesk's MariaDB admin credentials (/etc/psa/.psa.shadow, user admin)"},
		&cli.StringSliceFlag{Name: "db-name", Usage: "database to dump (repeatable; default: the one in --db, else all but the system schemas)"},
		&cli.IntFlag{Name: "db-threads", Usage: "parallel dump connections (their snapshots open at one commit point)", Value: 2},
		&cli.DurationFlag{Name: "db-lock-timeout", Usage: "bound for every lock wait; on timeout the dump falls back to one connection", Value: dump.DefaultLockTimeout},
		&cli.BoolFlag{Name: "lock-nontransactional", Usage: "hold a read lock on MyISAM/Aria tables so they are consistent too"},
	}
}

// dbConfig builds a driver config from an address flag and the credentials flags.
func dbConfig(c *cli.Context, addrFlag string) (*mysql.Config, error) {
	addr, err := dump.ParseAddress(c.String(addrFlag))
	if err != nil {
		return nil, usageError("--%s: %v", addrFlag, err)
	}
	var creds dump.Credentials
	switch {
	case c.Bool("db-plesk"):
		creds, err = dump.PleskCredentials("/etc/psa/.psa.shadow")
	case c.String("db-credentials") != "":
		creds, err = dump.ReadOptionFile(c.String("db-credentials"))
	default:
		return nil, usageError("no database credentials: pass --db-credentials FILE (an option file like /root/.my.cnf) or --db-plesk")
	}
	if err != nil {
		return nil, err
	}
	return addr.Config(creds), nil
}

func dbSourceFromFlags(c *cli.Context) (*backup.DBSource, error) {
	if c.String("db") == "" {
		return nil, nil
	}
	cfg, err := dbConfig(c, "db")
	if err != nil {
		return nil, err
	}
	return &backup.DBSource{Config: cfg, Options: dump.Options{
		Databases: c.StringSlice("db-name"), Threads: c.Int("db-threads"), LockTimeout: c.Duration("db-lock-timeout"),
		LockNonTransactional: c.Bool("lock-nontransactional"),
	}}, nil
}

func dbCommand() *cli.Command {
	return &cli.Command{
		Name:  "db",
		Usage: "database dumps in snapshots",
		Subcommands: []*cli.Command{{
			Name:      "load",
			Usage:     "load a database of a snapshot into a server, in parallel, and prove every table's row count and digest",
			ArgsUsage: "SNAPSHOT|latest",
			Flags: withRepoFlags(
				&cli.StringFlag{Name: "db", Usage: "database of the snapshot to load", Required: true},
				&cli.StringFlag{Name: "into", Usage: "target address with database, e.g. 'tcp(127.0.0.1:3306)/prestashop_copy'", Required: true},
				&cli.StringFlag{Name: "db-credentials", Usage: "option file with the target's credentials", EnvVars: []string{"SHOPVAULT_DB_CREDENTIALS"}},
				&cli.BoolFlag{Name: "db-plesk", Usage: "use Plesk's MariaDB admin credentials"},
				&cli.BoolFlag{Name: "drop-existing", Usage: "drop the target database's tables first (otherwise a non-empty target is refused)"},
				&cli.BoolFlag{Name: "grants", Usage: "also create the dumped users and grants (full restore on a new server)"},
				&cli.IntFlag{Name: "threads", Usage: "tables loaded in parallel", Value: dump.DefaultLoadThreads},
				&cli.BoolFlag{Name: "json", Usage: "print the load report as JSON"},
			),
			Action: func(c *cli.Context) error {
				ctx := c.Context
				cfg, err := dbConfig(c, "into")
				if err != nil {
					return err
				}
				if cfg.DBName == "" {
					return usageError("--into must name the target database, e.g. 'tcp(127.0.0.1:3306)/prestashop_copy'")
				}
				return withSnapshot(c, readKey, snapshotRef(c), func(r *repo.Repository, sn *repo.Snapshot) error {
					m, err := recovery.LoadManifest(ctx, r, sn)
					if err != nil {
						return err
					}
					if m.Database(c.String("db")) == nil {
						return fmt.Errorf("snapshot %s has no database %q (it has %v)", sn.ID.Short(), c.String("db"), sn.DB.Databases)
					}
					start := time.Now()
					rep, err := dump.Load(ctx, cfg, m, c.String("db"), recovery.NewSnapshotSource(r, sn.Tree), dump.LoadOptions{
						Threads: c.Int("threads"), DropExisting: c.Bool("drop-existing"), Grants: c.Bool("grants"),
					})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						b, _ := json.Marshal(rep)
						fmt.Fprintln(c.App.Writer, string(b))
						return nil
					}
					fmt.Fprintf(c.App.ErrWriter, "loaded %s into %s: %d tables, %d rows in %s; every table's row count and digest match the dump\n",
						c.String("db"), cfg.DBName, rep.Tables, rep.Rows, fmtDuration(time.Since(start)))
					return nil
				})
			},
		}},
	}
}
