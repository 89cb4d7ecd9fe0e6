package main

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/repo"
)

type snapshotJSON struct {
	ID       string             `json:"id"`
	Time     time.Time          `json:"time"`
	Stored   time.Time          `json:"stored_time"`
	Hostname string             `json:"hostname"`
	Tags     []string           `json:"tags,omitempty"`
	Paths    []string           `json:"paths"`
	Partial  bool               `json:"partial"`
	Stats    repo.SnapshotStats `json:"stats"`
	DB       *repo.DBInfo       `json:"db,omitempty"`
}

func snapshotsCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshots",
		Usage: "list snapshots (works with the host key)",
		Flags: withRepoFlags(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: func(c *cli.Context) error {
			return withRepo(c, anyKey, noLock, func(r *repo.Repository) error {
				sns, loadErr := r.Snapshots(c.Context)
				if c.Bool("json") {
					out := []snapshotJSON{}
					for _, s := range sns {
						out = append(out, snapshotJSON{ID: s.ID.String(), Time: s.Time, Stored: s.StoredTime, Hostname: s.Hostname, Tags: s.Tags, Paths: s.Paths, Partial: s.Partial, Stats: s.Stats, DB: s.DB})
					}
					b, _ := json.MarshalIndent(out, "", "  ")
					fmt.Fprintln(c.App.Writer, string(b))
					return loadErr
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTime\tHost\tTags\tSize\tFiles\tPaths")
				for _, s := range sns {
					paths := strings.Join(s.Paths, " ")
					if s.DB != nil {
						for _, d := range s.DB.Databases {
							paths += " " + path.Join("/db", d)
						}
					}
					flag := ""
					if s.Partial {
						flag = " (partial)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s%s\n", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"), s.Hostname,
						strings.Join(s.Tags, ","), fmtBytes(s.Stats.Bytes), s.Stats.Files, strings.TrimSpace(paths), flag)
				}
				tw.Flush()
				fmt.Fprintf(c.App.ErrWriter, "%d snapshots\n", len(sns))
				return loadErr
			})
		},
	}
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list files in a snapshot (needs the restore key: file names are encrypted)",
		ArgsUsage: "SNAPSHOT|latest [PATH]",
		Flags: withRepoFlags(
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"R"}, Usage: "list subdirectories too"},
			&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "show mode, owner, size and time"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per entry"},
		),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			return withSnapshot(c, readKey, snapshotRef(c), func(r *repo.Repository, sn *repo.Snapshot) error {
				p := "/"
				if c.NArg() > 1 {
					p = path.Clean("/" + c.Args().Get(1))
				}
				if c.Bool("recursive") {
					// One read per tree pack instead of a Load (round trips
					// on SFTP) per directory.
					_, _ = r.PrefetchTrees(ctx, sn, repo.DefaultTreeBudget)
				}
				node, tree, err := r.FindNode(ctx, sn.Tree, p)
				if err != nil {
					return err
				}
				print := func(full string, n *repo.Node) {
					switch {
					case c.Bool("json"):
						var raw []byte // the exact bytes, when JSON cannot carry them
						if !utf8.ValidString(full) {
							raw = []byte(full)
						}
						b, _ := json.Marshal(struct {
							Path    string `json:"path"`
							PathRaw []byte `json:"path_raw,omitempty"`
							*repo.Node
						}{full, raw, n})
						fmt.Fprintln(c.App.Writer, string(b))
					case c.Bool("long"):
						owner := n.User
						if owner == "" {
							owner = fmt.Sprint(n.UID)
						}
						group := n.Group
						if group == "" {
							group = fmt.Sprint(n.GID)
						}
						suffix := ""
						if n.Type == repo.NodeSymlink {
							suffix = " -> " + displayName(n.LinkTarget)
						}
						fmt.Fprintf(c.App.Writer, "%s %8s %8s %10d %s %s%s\n", n.Mode, displayName(owner), displayName(group), n.Size, n.ModTime.Local().Format("2006-01-02 15:04"), displayName(full), suffix)
					default:
						fmt.Fprintln(c.App.Writer, displayName(full))
					}
				}
				if tree == nil {
					print(p, node)
					return nil
				}
				var walk func(dir string, t *repo.Tree) error
				walk = func(dir string, t *repo.Tree) error {
					for i := range t.Nodes {
						n := &t.Nodes[i]
						full := path.Join(dir, n.Name)
						print(full, n)
						if c.Bool("recursive") && n.Type == repo.NodeDir {
							sub, err := r.LoadTree(ctx, *n.Subtree)
							if err != nil {
								return err
							}
							if err := walk(full, sub); err != nil {
								return err
							}
						}
					}
					return nil
				}
				return walk(p, tree)
			})
		},
	}
}

// displayName returns s as printed by ls: as it is when it is valid UTF-8
// without control characters, Go-quoted otherwise ("caf\xe9.jpg"), so that
// a hostile or Latin-1 file name can neither garble nor drive the terminal.
func displayName(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strconv.Quote(s)
}
