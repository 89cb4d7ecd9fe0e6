package main

import "github.com/urfave/cli/v2"

// extraCommands are the database and operations commands.
func extraCommands() []*cli.Command {
	return []*cli.Command{dbCommand(), forgetCommand(), pruneCommand(), runCommand(), configCommand(), scheduleCommand(), statusCommand(), notifyCommand(), verifyCommand(), drillCommand()}
}
