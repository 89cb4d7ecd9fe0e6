package recovery

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/repo"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// ErrNoShop is returned by FindShop when no snapshot directory looks like a
// PrestaShop web root.
var ErrNoShop = errors.New("no PrestaShop web root found in the snapshot")

// findShopDepth bounds how deep below each backed-up path FindShop looks,
// and findShopDirs how many directories it opens.
const (
	findShopDepth = 4
	findShopDirs  = 2000
)

// FindShop returns the snapshot path of the shop's web root: the directory,
// among the snapshot's paths and up to four levels below them, that holds
// app/config/parameters.php (1.7/8/9) or config/settings.inc.php beside
// classes/ (1.6). More than one candidate is an error naming them; none
// wraps ErrNoShop.
func FindShop(ctx context.Context, r *repo.Repository, sn *repo.Snapshot) (string, error) {
	// The trees in one read per tree pack (the restore that follows uses
	// the same cache); then each directory's tree is loaded once, from its
	// parent's node, not by a walk from the root.
	_, _ = r.PrefetchTrees(ctx, sn, repo.DefaultTreeBudget)
	type item struct {
		p     string
		id    repo.ID // of t
		t     *repo.Tree
		depth int
	}
	var queue []item
	for _, p := range snapshotFilePaths(sn) {
		n, t, err := r.FindNode(ctx, sn.Tree, p)
		if err != nil {
			return "", fmt.Errorf("look for the shop in %s: %w", p, err)
		}
		if n != nil && n.Type == repo.NodeDir && t != nil {
			queue = append(queue, item{p, *n.Subtree, t, 0})
		}
	}
	// isFile reports whether rel (slash separated) below it is a file.
	isFile := func(it item, rel string) bool {
		n, _, err := r.FindNode(ctx, it.id, rel)
		return err == nil && n.Type == repo.NodeFile
	}
	var found []string
	visited := 0
	for len(queue) > 0 && visited < findShopDirs {
		it := queue[0]
		queue = queue[1:]
		visited++
		names := map[string]repo.NodeType{}
		for _, c := range it.t.Nodes {
			names[c.Name] = c.Type
		}
		if names["app"] == repo.NodeDir && isFile(it, prestashop.ParametersFile) ||
			names["config"] == repo.NodeDir && names["classes"] == repo.NodeDir && isFile(it, prestashop.SettingsFile) {
			found = append(found, it.p)
			continue
		}
		if it.depth >= findShopDepth {
			continue
		}
		for _, c := range it.t.Nodes {
			if c.Type != repo.NodeDir || c.Subtree == nil || visited+len(queue) >= findShopDirs {
				continue
			}
			ct, err := r.LoadTree(ctx, *c.Subtree)
			if err != nil {
				return "", fmt.Errorf("look for the shop in %s: %w", path.Join(it.p, c.Name), err)
			}
			queue = append(queue, item{path.Join(it.p, c.Name), *c.Subtree, ct, it.depth + 1})
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w (looked in %s); name the shop's directory with --source", ErrNoShop, strings.Join(snapshotFilePaths(sn), ", "))
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("the snapshot holds %d PrestaShop web roots (%s): name the one to restore with --source", len(found), strings.Join(found, ", "))
}

// shopSource returns the snapshot directory to restore as the staging
// root: o.Source, else the PrestaShop web root FindShop finds, else the
// snapshot's only backed-up path.
func shopSource(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, source string) (string, error) {
	if source != "" {
		return path.Clean("/" + source), nil
	}
	p, err := FindShop(ctx, r, sn)
	if errors.Is(err, ErrNoShop) {
		if paths := snapshotFilePaths(sn); len(paths) == 1 {
			return paths[0], nil
		}
	}
	return p, err
}

// shopDatabase picks the database of the snapshot that belongs to the
// shop: the one its configuration names, else the only one.
func shopDatabase(m *dump.Manifest, shop *prestashop.Shop) (string, error) {
	var names []string
	for _, d := range m.Databases {
		names = append(names, d.Name)
	}
	if shop != nil && shop.DB.Name != "" {
		if m.Database(shop.DB.Name) != nil {
			return shop.DB.Name, nil
		}
		if len(names) == 1 {
			return names[0], nil
		}
		return "", fmt.Errorf("the shop's configuration names database %q, but the snapshot holds %s", shop.DB.Name, strings.Join(names, ", "))
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("the snapshot holds %d databases (%s) and the shop's configuration does not say which is its own", len(names), strings.Join(names, ", "))
}
