package main

import "github.com/urfave/cli/v2"

// extraCommands are the operations commands (config, schedule, status).
func extraCommands() []*cli.Command { return []*cli.Command{dbCommand()} }
