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
	type item struct {
		p     string
		depth int
	}
	var queue []item
	for _, p := range snapshotFilePaths(sn) {
		queue = append(queue, item{p, 0})
	}
	var found []string
	visited := 0
	for len(queue) > 0 && visited < findShopDirs {
		it := queue[0]
		queue = queue[1:]
		n, t, err := r.FindNode(ctx, sn.Tree, it.p)
		if err != nil {
			return "", fmt.Errorf("look for the shop in %s: %w", it.p, err)
		}
		if n != nil && n.Type != repo.NodeDir || t == nil {
			continue
		}
		visited++
		names := map[string]repo.NodeType{}
		for _, c := range t.Nodes {
			names[c.Name] = c.Type
		}
		isFile := func(rel string) bool {
			fn, _, err := r.FindNode(ctx, sn.Tree, path.Join(it.p, rel))
			return err == nil && fn.Type == repo.NodeFile
		}
		if names["app"] == repo.NodeDir && isFile(prestashop.ParametersFile) ||
			names["config"] == repo.NodeDir && names["classes"] == repo.NodeDir && isFile(prestashop.SettingsFile) {
			found = append(found, it.p)
			continue
		}
		if it.depth >= findShopDepth {
			continue
		}
		for _, c := range t.Nodes {
			if c.Type == repo.NodeDir {
				queue = append(queue, item{path.Join(it.p, c.Name), it.depth + 1})
			}
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
