package integration

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeDigest lists every entry under root with its type, mode, size and
// content, relative to root.
func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		if !fi.IsDir() {
			desc += " " + fi.ModTime().UTC().String()
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCLIRestoreRoundTrip(t *testing.T) {
	c := newLocalCLI(t)
	c.init(t)
	shop := filepath.Join(c.dir, "shop")
	writeShop(t, shop, 3)
	if err := os.Symlink("modules/moda", filepath.Join(shop, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(shop, "img", "big.bin"), filepath.Join(shop, "img", "hard.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(shop, "config", "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shop, "config", "parameters.php"), []byte("<?php return ['parameters' => []];\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	c.ok(t, nil, "backup", shop)

	// The host key cannot restore.
	target := filepath.Join(c.dir, "target")
	_, errOut, code := c.exec(t, nil, "restore", "latest", "--target", target)
	if code != 12 || !strings.Contains(errOut, "restore key") {
		t.Fatalf("restore with the host key: exit %d %s", code, errOut)
	}
	c.ok(t, c.restoreEnv(), "restore", "latest", "--target", target)
	want, got := treeDigest(t, shop), treeDigest(t, filepath.Join(target, shop))
	if len(want) != len(got) {
		t.Fatalf("restored %d entries, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s differs after restore:\n got %.80q\nwant %.80q", k, got[k], v)
		}
	}
	a, _ := os.Stat(filepath.Join(target, shop, "img", "big.bin"))
	b, _ := os.Stat(filepath.Join(target, shop, "img", "hard.bin"))
	if !os.SameFile(a, b) {
		t.Fatal("hard link restored as two files")
	}

	// A non-empty target is refused unless --overwrite.
	_, errOut, code = c.exec(t, c.restoreEnv(), "restore", "latest", "--target", target)
	if code == 0 || !strings.Contains(errOut, "--overwrite") {
		t.Fatalf("restore into a non-empty target: exit %d %s", code, errOut)
	}
	// --include restores one subtree; --overwrite resumes and keeps correct files.
	part := filepath.Join(c.dir, "part")
	c.ok(t, c.restoreEnv(), "restore", "latest", "--target", part, "--include", filepath.Join(shop, "config"))
	if _, err := os.Stat(filepath.Join(part, shop, "config", "parameters.php")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(part, shop, "img")); err == nil {
		t.Fatal("--include restored more than the subtree")
	}
	if err := os.WriteFile(filepath.Join(target, shop, "config", "parameters.php"), []byte("tampered"), 0o640); err != nil {
		t.Fatal(err)
	}
	out := c.ok(t, c.restoreEnv(), "restore", "latest", "--target", target, "--overwrite", "--json")
	if !strings.Contains(out, `"verify_problems":[]`) {
		t.Fatalf("overwrite restore did not verify clean: %s", out)
	}
	data, _ := os.ReadFile(filepath.Join(target, shop, "config", "parameters.php"))
	if !bytes.HasPrefix(data, []byte("<?php")) {
		t.Fatalf("tampered file not repaired: %q", data)
	}
}
