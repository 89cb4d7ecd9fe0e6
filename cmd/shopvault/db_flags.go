package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/backup"
)

func dbBackupFlags() []cli.Flag { return nil }

func dbSourceFromFlags(c *cli.Context) (*backup.DBSource, error) { return nil, nil }

func extraCommands() []*cli.Command { return nil }
