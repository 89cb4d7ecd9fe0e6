package restore

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/repo"
)

// maxDepth bounds the directory depth of a snapshot tree; deeper trees
// cannot be restored anyway (PATH_MAX) and would only be a hostile
// repository's way to exhaust memory.
const maxDepth = 1024

// selector decides which snapshot paths a restore or verify covers.
type selector struct {
	include []string // cleaned absolute snapshot paths
	exclude []string
	// rebase is the snapshot directory restored as the target root
	// itself ("" for none, see Options.Rebase).
	rebase string
}

func newSelector(include, exclude []string, rebase string) (*selector, error) {
	s := &selector{}
	if rebase != "" {
		s.rebase = path.Clean("/" + rebase)
		if s.rebase == "/" {
			s.rebase = ""
		}
	}
	for _, inc := range include {
		if strings.TrimSpace(inc) == "" {
			return nil, fmt.Errorf("empty --include path: give a snapshot path such as /var/www/shop")
		}
		c := path.Clean("/" + inc)
		if s.rebase != "" && c != s.rebase && !strings.HasPrefix(c, s.rebase+"/") {
			return nil, fmt.Errorf("include %s is outside %s, the snapshot directory restored as the target", c, s.rebase)
		}
		if c == "/" {
			s.include = nil // include of the root: everything
			break
		}
		s.include = append(s.include, c)
	}
	if s.rebase != "" && len(s.include) == 0 {
		s.include = []string{s.rebase}
	}
	for _, ex := range exclude {
		if _, err := path.Match(ex, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", ex, err)
		}
		s.exclude = append(s.exclude, ex)
	}
	return s, nil
}

// target returns the path under the target of snapshot path p, and false
// for the paths that are not restored as entries: with a rebase, the
// rebased directory itself (it is the target) and its ancestors.
func (s *selector) target(p string) (string, bool) {
	if s.rebase == "" {
		return p[1:], true
	}
	if !strings.HasPrefix(p, s.rebase+"/") {
		return "", false
	}
	return p[len(s.rebase)+1:], true
}

func (s *selector) excluded(p string) bool {
	base := path.Base(p)
	for _, ex := range s.exclude {
		if ok, _ := path.Match(ex, p); ok {
			return true
		}
		if ok, _ := path.Match(ex, base); ok {
			return true
		}
	}
	return false
}

// within reports whether p lies inside an included subtree.
func (s *selector) within(p string) bool {
	if len(s.include) == 0 {
		return true
	}
	for _, inc := range s.include {
		if p == inc || strings.HasPrefix(p, inc+"/") {
			return true
		}
	}
	return false
}

// ancestor reports whether p is a parent directory of an included path.
func (s *selector) ancestor(p string) bool {
	for _, inc := range s.include {
		if strings.HasPrefix(inc, p+"/") {
			return true
		}
	}
	return false
}

// entry is one selected snapshot node.
type entry struct {
	path  string // snapshot path, "/var/www/x"
	rel   string // path under the target, "var/www/x"
	depth int
	node  *repo.Node
}

// checkIncludes makes sure every include exists in the snapshot.
func (s *selector) checkIncludes(ctx context.Context, r *repo.Repository, rootTree repo.ID) error {
	if s.rebase != "" {
		n, _, err := r.FindNode(ctx, rootTree, s.rebase)
		if err != nil {
			return fmt.Errorf("rebase %s: %w", s.rebase, err)
		}
		if n.Type != repo.NodeDir {
			return fmt.Errorf("rebase %s: is a %s in the snapshot, not a directory", s.rebase, n.Type)
		}
	}
	for _, inc := range s.include {
		if _, _, err := r.FindNode(ctx, rootTree, inc); err != nil {
			return fmt.Errorf("include %s: %w", inc, err)
		}
	}
	return nil
}

// walk visits every selected node, breadth first (so a directory always
// comes before its contents), loading up to workers trees in parallel.
// Names are validated again here (defence in depth on top of
// repo.DecodeTree).
func walk(ctx context.Context, r *repo.Repository, rootTree repo.ID, sel *selector, workers int, fn func(e entry) error) error {
	type dirItem struct {
		path  string
		tree  repo.ID
		full  bool
		depth int
	}
	level := []dirItem{{path: "/", tree: rootTree, full: len(sel.include) == 0}}
	for len(level) > 0 {
		trees := make([]*repo.Tree, len(level))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for i, d := range level {
			g.Go(func() error {
				t, err := r.LoadTree(gctx, d.tree)
				if err != nil {
					return fmt.Errorf("load directory %s of the snapshot: %w", d.path, err)
				}
				trees[i] = t
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		var next []dirItem
		for i, d := range level {
			if d.depth >= maxDepth {
				return fmt.Errorf("snapshot directory %s is nested deeper than %d levels; refusing the tree", d.path, maxDepth)
			}
			for j := range trees[i].Nodes {
				n := &trees[i].Nodes[j]
				if err := repo.ValidName(n.Name); err != nil {
					return fmt.Errorf("snapshot directory %s: %w", d.path, err)
				}
				p := path.Join(d.path, n.Name)
				if sel.excluded(p) {
					continue
				}
				full := d.full || sel.within(p)
				if !full && !(n.Type == repo.NodeDir && sel.ancestor(p)) {
					continue
				}
				if rel, ok := sel.target(p); ok {
					// a right-sized copy, so that the decoded tree (and its
					// slices' spare capacity) can be freed after this level
					c := *n
					c.Content = slices.Clone(n.Content)
					if err := fn(entry{path: p, rel: rel, depth: d.depth + 1, node: &c}); err != nil {
						return err
					}
				}
				if n.Type == repo.NodeDir {
					if n.Subtree == nil {
						return fmt.Errorf("snapshot directory %s has no subtree", p)
					}
					next = append(next, dirItem{path: p, tree: *n.Subtree, full: full, depth: d.depth + 1})
				}
			}
			trees[i] = nil
		}
		level = next
	}
	return nil
}
