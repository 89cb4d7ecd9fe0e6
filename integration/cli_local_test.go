package integration

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopvault/shopvault/integration/mariadbtest"
)

// localCLI runs the shopvault binary against a local repository.
type localCLI struct {
	bin, dir, repo string
	env            []string
}

func newLocalCLI(t *testing.T) *localCLI {
	t.Helper()
	dir := t.TempDir()
	c := &localCLI{bin: buildShopvault(t), dir: dir, repo: filepath.Join(dir, "repo")}
	c.env = append(os.Environ(),
		"SHOPVAULT_CONFIG="+filepath.Join(dir, "none.toml"),
		"SHOPVAULT_REPO="+c.repo,
		"SHOPVAULT_HOST_KEY="+filepath.Join(dir, "host.key"),
		"SHOPVAULT_RESTORE_KEY=",
		"SHOPVAULT_CACHE_DIR="+filepath.Join(dir, "cache"),
	)
	return c
}

func (c *localCLI) cmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), env...)
	return cmd
}

// exec runs shopvault and returns stdout, stderr and the exit code.
func (c *localCLI) exec(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.cmd(env, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (c *localCLI) ok(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := c.exec(t, env, args...)
	if code != 0 {
		t.Fatalf("shopvault %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (c *localCLI) restoreEnv() []string {
	return []string{"SHOPVAULT_RESTORE_KEY=" + filepath.Join(c.dir, "restore.key")}
}

func (c *localCLI) init(t *testing.T) {
	t.Helper()
	_, errOut, code := c.exec(t, nil, "init", "--restore-key", filepath.Join(c.dir, "restore.key"))
	if code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	if !strings.Contains(errOut, "OFF this server") {
		t.Fatalf("init does not tell where the restore key must go:\n%s", errOut)
	}
	for _, k := range []string{"host.key", "restore.key"} {
		fi, err := os.Stat(filepath.Join(c.dir, k))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v", k, err, fi.Mode())
		}
	}
}

func writeShop(t *testing.T, root string, bigMiB int) {
	t.Helper()
	for i := 0; i < 30; i++ {
		dir := filepath.Join(root, "modules", "mod"+string(rune('a'+i%10)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "file"+string(rune('a'+i))+".php"), bytes.Repeat([]byte("<?php echo 'x';\n"), 100+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if bigMiB > 0 {
		big := make([]byte, bigMiB<<20)
		_, _ = rand.Read(big)
		if err := os.MkdirAll(filepath.Join(root, "img"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "img", "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCLIKeysLocksAndBadInput(t *testing.T) {
	c := newLocalCLI(t)
	c.init(t)
	shop := filepath.Join(c.dir, "shop")
	writeShop(t, shop, 1)

	// A path that does not exist: clear error, no snapshot.
	_, errOut, code := c.exec(t, nil, "backup", filepath.Join(c.dir, "nope"))
	if code != 1 || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("missing path: exit %d %s", code, errOut)
	}
	c.ok(t, nil, "backup", shop)

	// The host key lists snapshots but cannot list file names or restore.
	if out := c.ok(t, nil, "snapshots"); !strings.Contains(out, shop) {
		t.Fatalf("snapshots with the host key:\n%s", out)
	}
	_, errOut, code = c.exec(t, nil, "ls", "latest", shop)
	if code != 12 || !strings.Contains(errOut, "restore key") {
		t.Fatalf("ls with the host key: exit %d %s", code, errOut)
	}
	if out := c.ok(t, c.restoreEnv(), "ls", "latest", filepath.Join(shop, "modules")); !strings.Contains(out, "moda") {
		t.Fatalf("ls with the restore key:\n%s", out)
	}

	// A key of another repository.
	other := newLocalCLI(t)
	other.init(t)
	_, errOut, code = c.exec(t, []string{"SHOPVAULT_HOST_KEY=" + filepath.Join(other.dir, "host.key")}, "snapshots")
	if code != 12 || !strings.Contains(errOut, "wrong key") {
		t.Fatalf("foreign key: exit %d %s", code, errOut)
	}
	// A key file others can read is refused.
	loose := filepath.Join(c.dir, "loose.key")
	data, _ := os.ReadFile(filepath.Join(c.dir, "host.key"))
	_ = os.WriteFile(loose, data, 0o644)
	_, errOut, code = c.exec(t, []string{"SHOPVAULT_HOST_KEY=" + loose}, "snapshots")
	if code == 0 || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("0644 key: exit %d %s", code, errOut)
	}
	// Missing repository.
	_, errOut, code = c.exec(t, []string{"SHOPVAULT_REPO=" + filepath.Join(c.dir, "none")}, "snapshots")
	if code != 10 {
		t.Fatalf("no repository: exit %d %s", code, errOut)
	}

	// A live exclusive lock blocks a backup (exit 11); a stale one is taken over.
	lockDir := filepath.Join(c.repo, "locks")
	host, _ := os.Hostname()
	live := `{"time":"` + time.Now().UTC().Format(time.RFC3339) + `","exclusive":true,"hostname":"` + host + `","username":"x","pid":1}`
	if err := os.WriteFile(filepath.Join(lockDir, "aaaa"), []byte(live), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.exec(t, nil, "backup", shop)
	if code != 11 || !strings.Contains(errOut, "unlock") {
		t.Fatalf("locked: exit %d %s", code, errOut)
	}
	os.Remove(filepath.Join(lockDir, "aaaa"))
	dead := `{"time":"` + time.Now().UTC().Format(time.RFC3339) + `","exclusive":true,"hostname":"` + host + `","username":"x","pid":999999}`
	_ = os.WriteFile(filepath.Join(lockDir, "bbbb"), []byte(dead), 0o600)
	_, errOut, code = c.exec(t, nil, "backup", shop)
	if code != 0 || !strings.Contains(errOut, "stale lock") {
		t.Fatalf("stale lock not taken over: exit %d %s", code, errOut)
	}

	// A truncated pack is detected and named by check.
	var pack string
	_ = filepath.Walk(filepath.Join(c.repo, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && pack == "" {
			pack = p
		}
		return nil
	})
	fi, _ := os.Stat(pack)
	if err := os.Truncate(pack, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.exec(t, nil, "check")
	if code != 1 || !strings.Contains(errOut, filepath.Base(pack)) {
		t.Fatalf("check of a truncated pack: exit %d %s", code, errOut)
	}
}

func TestCLIKilledBackupLeavesRepositoryConsistent(t *testing.T) {
	c := newLocalCLI(t)
	c.init(t)
	shop := filepath.Join(c.dir, "shop")
	writeShop(t, shop, 0)
	c.ok(t, nil, "backup", shop)
	writeShop(t, filepath.Join(shop, "more"), 300)

	cmd := c.cmd(nil, "backup", shop)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it has uploaded something of the big file.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		_ = filepath.Walk(filepath.Join(c.repo, "data"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n++
			}
			return nil
		})
		if n >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if err == nil {
		t.Skip("the backup finished before it could be killed")
	}
	out := c.ok(t, nil, "snapshots", "--json")
	if strings.Count(out, `"id"`) != 1 {
		t.Fatalf("after kill -9 there should be exactly the first snapshot:\n%s", out)
	}
	// The stale lock of the killed process is taken over, check passes, the next backup works.
	c.ok(t, nil, "check")
	c.ok(t, nil, "backup", shop)
	c.ok(t, c.restoreEnv(), "check", "--read-data")
}

func TestCLIDatabaseBackupAndLoad(t *testing.T) {
	srv := mariadbtest.Start(t)
	srv.LoadPrestaShop(t, "prestashop")
	c := newLocalCLI(t)
	c.init(t)
	creds := filepath.Join(c.dir, "my.cnf")
	if err := os.WriteFile(creds, []byte("[client]\nuser=root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shop := filepath.Join(c.dir, "shop")
	writeShop(t, shop, 0)
	addr := "unix(" + srv.Socket + ")/prestashop"
	out := c.ok(t, nil, "backup", "--json", "--db", addr, "--db-credentials", creds, "--db-threads", "2", shop)
	if !strings.Contains(out, `"result":"ok"`) {
		t.Fatalf("backup: %s", out)
	}
	ls := c.ok(t, c.restoreEnv(), "ls", "-R", "latest", "/db/prestashop")
	for _, want := range []string{"/db/prestashop/schema.sql", "/db/prestashop/tables/ps_orders.sql", "/db/prestashop/tables/ps_configuration.sql"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("ls /db/prestashop lacks %s:\n%s", want, ls)
		}
	}
	into := "unix(" + srv.Socket + ")/prestashop_copy"
	c.ok(t, c.restoreEnv(), "db", "load", "latest", "--db", "prestashop", "--into", into, "--db-credentials", creds, "--threads", "2")
	// Loading again into the now non-empty database is refused.
	_, errOut, code := c.exec(t, c.restoreEnv(), "db", "load", "latest", "--db", "prestashop", "--into", into, "--db-credentials", creds)
	if code == 0 || !strings.Contains(errOut, "drop-existing") {
		t.Fatalf("load into a non-empty database: exit %d %s", code, errOut)
	}
	dumpOf := func(db string) string {
		cmd := srv.Command(t, "mariadb-dump", "--skip-dump-date", "--skip-comments", db)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mariadb-dump %s: %v", db, err)
		}
		return string(out)
	}
	a, b := dumpOf("prestashop"), dumpOf("prestashop_copy")
	if a != b {
		t.Fatalf("mariadb-dump of the original and the loaded copy differ (%d vs %d bytes)", len(a), len(b))
	}
}
