//go:build !withrestore

package main

import "github.com/urfave/cli/v2"

func restoreCommand() *cli.Command { return &cli.Command{Name: "restore"} }
