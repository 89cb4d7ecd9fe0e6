package integration

import (
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/shopvault/shopvault/integration/mariadbtest"
)

// TestRecoveryFullOntoFreshServer restores a snapshot onto an empty root and
// a fresh mariadbd without the shop's user: afterwards the shop's user logs
// in with its original password and the files are identical.
func TestRecoveryFullOntoFreshServer(t *testing.T) {
	prod := mariadbtest.Start(t)
	prod.LoadPrestaShop(t, "prestashop")
	shopDBUser(t, prod, "prestashop")
	c := newLocalCLI(t)
	c.init(t)
	creds := rootCreds(t, c.dir)
	shop := demoShop(t, prod, "prestashop")
	c.ok(t, nil, "backup", "--db", "unix("+prod.Socket+")/prestashop", "--db-credentials", creds, shop)

	fresh := mariadbtest.Start(t)
	root := filepath.Join(c.dir, "newdisk")
	args := []string{"restore", "latest", "--to", "full", "--root", root, "--db-into", "unix(" + fresh.Socket + ")/", "--db-credentials", creds}
	// No terminal and no --yes: refused, nothing written.
	cmd := c.cmd(c.restoreEnv(), args...)
	_, errOut, code := runCLI(t, cmd)
	if code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("full restore without --yes: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(root); err == nil {
		t.Fatal("an unconfirmed full restore wrote files")
	}
	out := c.ok(t, c.restoreEnv(), append(args, "--yes", "--json")...)
	rep := parseReport(t, []byte(out))
	if f := rep.failed(); len(f) > 0 {
		t.Fatalf("full restore checklist failed: %q", f)
	}

	// Files at their original path under the new root, identical.
	// (var/cache is not backed up: backup's PrestaShop excludes.)
	want, got := treeDigest(t, shop), treeDigest(t, filepath.Join(root, shop))
	for k, v := range want {
		if strings.HasPrefix(k, "var/cache") {
			delete(want, k)
			continue
		}
		if got[k] != v {
			t.Errorf("%s differs after the full restore", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entries restored, want %d", len(got), len(want))
	}
	// The shop's own user, with its original password, on the fresh server.
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "shopuser", "Sh0p-s3cret", "tcp", fmt.Sprintf("127.0.0.1:%d", fresh.Port), "prestashop"
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM ps_configuration").Scan(&n); err != nil || n == 0 {
		t.Fatalf("the shop's user cannot use its database on the fresh server: %v (%d rows)", err, n)
	}
	a, b := mariadbDumpLines(t, prod, "prestashop"), mariadbDumpLines(t, fresh, "prestashop")
	if onlyA, onlyB := lineDiff(a, b); len(onlyA)+len(onlyB) > 0 {
		t.Errorf("mariadb-dump differs after the full restore: %d/%d lines, e.g. %.200q", len(onlyA), len(onlyB), append(onlyA, onlyB...)[0])
	}

	// verify --to full, then a second restore is refused without --overwrite.
	c.ok(t, c.restoreEnv(), "verify", "--to", "full", "--root", root, "--db-into", "unix("+fresh.Socket+")/", "--db-credentials", creds)
	_, errOut, code = c.exec(t, c.restoreEnv(), append(args, "--yes")...)
	if code == 0 || !strings.Contains(errOut, "--overwrite") {
		t.Fatalf("full restore over existing files: exit %d\n%s", code, errOut)
	}
}

// TestRecoveryDrill runs the drill, then breaks a pack in the middle: the
// drill fails naming the damaged files, and a staging restore with
// --ignore-errors restores the rest (exit 3).
func TestRecoveryDrill(t *testing.T) {
	srv := mariadbtest.Start(t)
	srv.LoadPrestaShop(t, "prestashop")
	c := newLocalCLI(t)
	c.init(t)
	creds := rootCreds(t, c.dir)
	shop := demoShop(t, srv, "prestashop")
	writeRandomFile(t, filepath.Join(shop, "img", "big.jpg"), 3<<20)
	// Files alone first, so that their pack holds no dump stream.
	c.ok(t, nil, "backup", shop)
	var filePack string
	var biggest int64
	_ = filepath.WalkDir(filepath.Join(c.repo, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, _ := d.Info(); fi.Size() > biggest {
				filePack, biggest = p, fi.Size()
			}
		}
		return nil
	})
	c.ok(t, nil, "backup", "--db", "unix("+srv.Socket+")/prestashop", "--db-credentials", creds, shop)

	report := filepath.Join(c.dir, "drill.json")
	scratch := filepath.Join(c.dir, "scratch")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	drill := []string{"drill", "--json", report, "--scratch", scratch, "--db-into", "unix(" + srv.Socket + ")/", "--db-credentials", creds}
	_, errOut, code := c.exec(t, c.restoreEnv(), drill...)
	if code != 0 {
		t.Fatalf("drill: exit %d\n%s", code, errOut)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	rep := parseReport(t, data)
	if f := rep.failed(); len(f) > 0 || rep.Files == nil || rep.Files.Verified < 20 || len(rep.Databases) != 1 || rep.Databases[0].Tables < 200 {
		t.Fatalf("drill report: failed %q, %+v", f, rep)
	}
	if rep.RTO <= 0 || rep.RPO <= 0 || rep.Scratch == nil || rep.Scratch.Kept {
		t.Errorf("drill report: RTO %v RPO %v scratch %+v", rep.RTO, rep.RPO, rep.Scratch)
	}
	if !strings.Contains(errOut, "RTO") || !strings.Contains(errOut, "rewrite: ") {
		t.Errorf("drill output lacks RTO or the rewrite checks:\n%s", errOut)
	}
	// Scratch gone: directory and throwaway database.
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Errorf("scratch left behind: %v", entries)
	}
	var name string
	err = srv.DB(t, "").QueryRow("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'shopvault_drill_%'").Scan(&name)
	if err != sql.ErrNoRows {
		t.Errorf("throwaway database left behind: %q %v", name, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.repo, "verified")); len(entries) != 1 {
		t.Errorf("drill recorded %d verifications, want 1", len(entries))
	}

	// A corrupted pack in the middle: the drill fails and names the files.
	f, err := os.OpenFile(filePack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("CORRUPTED-BY-TEST"), biggest/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, errOut, code = c.exec(t, c.restoreEnv(), drill...)
	if code == 0 || !strings.Contains(errOut, "damaged: "+filepath.Join(shop, "img", "big.jpg")) || !strings.Contains(errOut, "FAILED") {
		t.Fatalf("drill over a damaged pack: exit %d\n%s", code, errOut)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.repo, "verified")); len(entries) != 1 {
		t.Errorf("a failed drill recorded a verification")
	}
	// restore --ignore-errors restores the rest (exit 3, partial).
	cfgPath := filepath.Join(c.dir, "cfg.toml")
	staging := filepath.Join(c.dir, "staging")
	cfg := fmt.Sprintf("repository = %q\nstate-dir = %q\n[[sources]]\npaths = [%q]\n\n[targets.staging]\nroot = %q\ndb-address = \"unix(%s)/\"\ndb-credentials-file = %q\ndb-name = \"shop_staging\"\ndomain = \"staging.example.org\"\n",
		c.repo, filepath.Join(c.dir, "state"), shop, staging, srv.Socket, creds)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(c.restoreEnv(), "SHOPVAULT_CONFIG="+cfgPath)
	_, errOut, code = c.exec(t, env, "restore", "latest", "--to", "staging")
	if code == 0 || !strings.Contains(errOut, "ignore-errors") {
		t.Fatalf("staging restore over a damaged pack: exit %d\n%s", code, errOut)
	}
	_, errOut, code = c.exec(t, env, "restore", "latest", "--to", "staging", "--ignore-errors", "--overwrite", "--drop-existing")
	if code != 3 || !strings.Contains(errOut, "damaged: "+filepath.Join(shop, "img", "big.jpg")) {
		t.Fatalf("staging restore --ignore-errors: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(staging, "modules", "mod5", "mod.php")); err != nil {
		t.Errorf("--ignore-errors did not restore the rest: %v", err)
	}

	// The wrong key.
	other := newLocalCLI(t)
	other.init(t)
	_, errOut, code = c.exec(t, []string{"SHOPVAULT_RESTORE_KEY=" + filepath.Join(other.dir, "restore.key")}, drill...)
	if code != 12 || !strings.Contains(errOut, "wrong key") {
		t.Fatalf("drill with another repository's key: exit %d\n%s", code, errOut)
	}
}

// TestRecoveryStagingDiskFull restores a staging clone onto a full
// filesystem: a clear error, and verify reports the partial state.
func TestRecoveryStagingDiskFull(t *testing.T) {
	c := newLocalCLI(t)
	c.init(t)
	shop := filepath.Join(c.dir, "site")
	writeShop(t, shop, 4)
	c.ok(t, nil, "backup", shop)
	staging := filepath.Join(c.dir, "small")
	mountTmpfs(t, staging, "size=1m")
	cfgPath := filepath.Join(c.dir, "cfg.toml")
	cfg := fmt.Sprintf("repository = %q\nstate-dir = %q\n[[sources]]\npaths = [%q]\n\n[targets.staging]\nroot = %q\ndomain = \"staging.example.org\"\n", c.repo, filepath.Join(c.dir, "state"), shop, staging)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(c.restoreEnv(), "SHOPVAULT_CONFIG="+cfgPath)
	_, errOut, code := c.exec(t, env, "restore", "latest", "--to", "staging")
	if code == 0 || !strings.Contains(errOut, "no space") {
		t.Fatalf("staging restore onto a full disk: exit %d\n%s", code, errOut)
	}
	_, errOut, code = c.exec(t, env, "verify", "--to", "staging")
	if code == 0 || !strings.Contains(errOut, "did not complete") || !strings.Contains(errOut, "differences from the snapshot") {
		t.Fatalf("verify of a restore cut by a full disk: exit %d\n%s", code, errOut)
	}
}
