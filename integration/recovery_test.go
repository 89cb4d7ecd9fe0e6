package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/shopvault/shopvault/integration/mariadbtest"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// demoShop builds a PrestaShop 9 web root (the shop9 fixture: kernels,
// admin directory, caches with a copy of the credentials, .htaccess with
// its #Domain: line) whose parameters.php points at database db on s,
// plus images and modules.
func demoShop(t *testing.T, s *mariadbtest.Server, db string) string {
	t.Helper()
	root := copyShop(t, "shop9")
	for _, f := range []string{".env", ".env.local"} {
		if err := os.Remove(filepath.Join(root, f)); err != nil {
			t.Fatal(err)
		}
	}
	params := filepath.Join(root, "app", "config", "parameters.php")
	data, err := os.ReadFile(params)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"'database_host' => 'localhost'", "'database_host' => '127.0.0.1'",
		"'database_port' => ''", fmt.Sprintf("'database_port' => '%d'", s.Port),
		"'database_name' => 'ps9_in_file'", "'database_name' => '"+db+"'",
		"'database_user' => 'ps9_in_file'", "'database_user' => 'shopuser'",
		"'database_password' => 'in-file'", "'database_password' => 'Sh0p-s3cret'",
	).Replace(string(data))
	if err := os.WriteFile(params, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	writeRandomFile(t, filepath.Join(root, "img", "p", "1", "1.jpg"), 300<<10)
	writeRandomFile(t, filepath.Join(root, "img", "p", "2", "2.jpg"), 200<<10)
	for i := 0; i < 12; i++ {
		dir := filepath.Join(root, "modules", fmt.Sprintf("mod%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "mod.php"), bytes.Repeat([]byte(fmt.Sprintf("<?php // module %d\n", i)), 50+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// shopDBUser creates the shop's own database user on s.
func shopDBUser(t *testing.T, s *mariadbtest.Server, db string) {
	t.Helper()
	s.Exec(t, "", "CREATE USER 'shopuser'@'%' IDENTIFIED BY 'Sh0p-s3cret'", "GRANT ALL ON `"+db+"`.* TO 'shopuser'@'%'")
}

// rootCreds writes a client option file for root over the socket.
func rootCreds(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "my.cnf")
	if err := os.WriteFile(p, []byte("[client]\nuser=root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mariadbDumpLines dumps db one row per line.
func mariadbDumpLines(t *testing.T, s *mariadbtest.Server, db string) []string {
	t.Helper()
	out, err := s.Command(t, "mariadb-dump", "--skip-dump-date", "--skip-comments", "--skip-extended-insert", "--order-by-primary", db).Output()
	if err != nil {
		t.Fatalf("mariadb-dump %s: %v", db, err)
	}
	return strings.Split(string(out), "\n")
}

// lineDiff returns the lines of a not in b and of b not in a (multisets).
func lineDiff(a, b []string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		count[l]--
	}
	for l, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, l)
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return
}

type recoveryReport struct {
	Kind      string `json:"kind"`
	Snapshot  string `json:"snapshot"`
	Checklist []struct {
		What   string `json:"what"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checklist"`
	Files *struct {
		Damaged  []string `json:"damaged"`
		Verified int64    `json:"verified_files"`
		Excluded []string `json:"excluded_from_verify"`
	} `json:"files"`
	Databases []struct {
		From      string   `json:"from"`
		Into      string   `json:"into"`
		Tables    int      `json:"tables"`
		Rewritten []string `json:"rewritten"`
	} `json:"databases"`
	RTO     float64 `json:"rto_seconds"`
	RPO     float64 `json:"rpo_seconds"`
	Scratch *struct {
		Dir      string `json:"dir"`
		Database string `json:"database"`
		Kept     bool   `json:"kept"`
	} `json:"scratch"`
}

func parseReport(t *testing.T, data []byte) recoveryReport {
	t.Helper()
	var r recoveryReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	return r
}

func (r recoveryReport) failed() []string {
	var out []string
	for _, c := range r.Checklist {
		if !c.OK {
			out = append(out, c.What+": "+c.Detail)
		}
	}
	return out
}

// runCLI runs cmd and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
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

// TestRecoveryStagingOverSFTP is the end-to-end staging clone: a demo
// PrestaShop (files + the real 9.0 schema and seed) backed up over SFTP to a
// real sshd, restored with `restore --to staging` onto a second root and
// database, and proven by comparing trees and mariadb-dump output.
func TestRecoveryStagingOverSFTP(t *testing.T) {
	srv := mariadbtest.Start(t)
	srv.LoadPrestaShop(t, "prestashop")
	shopDBUser(t, srv, "prestashop")
	sshd := sshdtest.Start(t)
	c := newSFTPCLI(t, sshd)
	c.run(t, "init")
	dir := t.TempDir()
	creds := rootCreds(t, dir)
	shop := demoShop(t, srv, "prestashop")
	c.run(t, "backup", "--db", "unix("+srv.Socket+")/prestashop", "--db-credentials", creds, shop)

	staging := filepath.Join(dir, "staging")
	cfgPath := filepath.Join(dir, "shopvault.toml")
	cfg := fmt.Sprintf(`repository = %q
state-dir = %q
cache-dir = %q

[[sources]]
paths = [%q]

[targets.staging]
root = %q
db-address = "unix(%s)/"
db-credentials-file = %q
db-name = "prestashop_staging"
domain = "staging.example.org"
maintenance = true
maintenance-ips = ["203.0.113.7"]

[targets.other]
root = %q
db-address = "unix(%s)/"
db-credentials-file = %q
db-name = "prestashop_staging"
domain = "other.example.org"
`, sshd.URL(c.repo), filepath.Join(dir, "state"), filepath.Join(dir, "cache"), shop, staging, srv.Socket, creds,
		filepath.Join(dir, "other"), srv.Socket, creds)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.env = append(c.env, "SHOPVAULT_CONFIG="+cfgPath)

	out := c.run(t, "restore", "latest", "--to", "staging", "--json")
	rep := parseReport(t, []byte(out))
	if f := rep.failed(); len(f) > 0 || len(rep.Checklist) < 20 {
		t.Fatalf("staging checklist: %d items, failed %q", len(rep.Checklist), f)
	}

	// Files: identical apart from the rewritten ones.
	want, got := treeDigest(t, shop), treeDigest(t, staging)
	var changed []string
	for k, v := range want {
		if got[k] != v {
			changed = append(changed, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			changed = append(changed, "+"+k)
		}
	}
	sort.Strings(changed)
	// var/cache is not even backed up (backup's PrestaShop excludes).
	wantChanged := []string{"+robots.txt", ".htaccess", "app/config/parameters.php", "var/cache",
		"var/cache/admin", "var/cache/admin/prod", "var/cache/admin/prod/appParameters.php",
		"var/cache/front", "var/cache/front/prod", "var/cache/front/prod/container.php"}
	if strings.Join(changed, "\n") != strings.Join(wantChanged, "\n") {
		t.Errorf("files that differ from the shop:\n%s\nwant:\n%s", strings.Join(changed, "\n"), strings.Join(wantChanged, "\n"))
	}
	params, _ := os.ReadFile(filepath.Join(staging, "app", "config", "parameters.php"))
	for _, w := range []string{"'database_name' => 'prestashop_staging'", "'database_user' => 'root'",
		"'cookie_key' => 'TEST_ONLY_cookie_key_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR'"} {
		if !bytes.Contains(params, []byte(w)) {
			t.Errorf("staging parameters.php lacks %s", w)
		}
	}
	if ht, _ := os.ReadFile(filepath.Join(staging, ".htaccess")); bytes.Contains(ht, []byte("shop.example.com")) || !bytes.Contains(ht, []byte("staging.example.org")) {
		t.Errorf("staging .htaccess still names production:\n%s", ht)
	}

	// Database: mariadb-dump identical apart from the rewritten rows.
	a, b := mariadbDumpLines(t, srv, "prestashop"), mariadbDumpLines(t, srv, "prestashop_staging")
	onlyA, onlyB := lineDiff(a, b)
	if len(onlyA) == 0 || len(onlyB) == 0 {
		t.Fatal("the clone's dump equals production's: nothing was rewritten")
	}
	for _, l := range append(onlyA, onlyB...) {
		if !strings.HasPrefix(l, "INSERT INTO `ps_configuration` VALUES") && !strings.HasPrefix(l, "INSERT INTO `ps_shop_url` VALUES") {
			t.Errorf("a line outside the rewritten rows differs: %.200s", l)
		}
	}
	clone := srv.DB(t, "prestashop_staging")
	q := func(query string) int {
		t.Helper()
		var n int
		if err := clone.QueryRow(query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_MAIL_METHOD' AND value <> '3'") != 0 || q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_MAIL_METHOD'") == 0 {
		t.Error("e-mail is not off on the clone")
	}
	if q("SELECT COUNT(*) FROM ps_shop_url WHERE domain = 'staging.example.org' AND domain_ssl = 'staging.example.org'") != 1 ||
		q("SELECT COUNT(*) FROM ps_configuration WHERE name IN ('PS_SHOP_DOMAIN','PS_SHOP_DOMAIN_SSL') AND value <> 'staging.example.org'") != 0 {
		t.Error("domain not rewritten on the clone")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_SHOP_ENABLE' AND value = '0'") != 1 {
		t.Error("maintenance mode not on")
	}

	// verify re-checks the restore; it notices a changed file and row.
	_, errOut, code := runCLI(t, c.command("verify", "--to", "staging"))
	if code != 0 || !strings.Contains(errOut, "all ") {
		t.Fatalf("verify --to staging: exit %d\n%s", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(staging, "modules", "mod3", "mod.php"), []byte("<?php // hacked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Exec(t, "prestashop_staging", "UPDATE ps_orders SET total_paid = total_paid + 1 LIMIT 1",
		"UPDATE ps_configuration SET value = '1' WHERE name = 'PS_MAIL_METHOD' LIMIT 1")
	_, errOut, code = runCLI(t, c.command("verify", "--to", "staging"))
	if code == 0 || !strings.Contains(errOut, "modules/mod3/mod.php") || !strings.Contains(errOut, "ps_orders") || !strings.Contains(errOut, "PS_MAIL_METHOD") {
		t.Fatalf("verify after tampering: exit %d\n%s", code, errOut)
	}

	// Bad input.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", "abcdef12", "--to", "staging"}, "abcdef12"},
		{[]string{"restore", "latest", "--to", "production"}, `target "production" is not in`},
		{[]string{"restore", "latest", "--to", "other"}, "drop-existing"},                    // staging DB has tables
		{[]string{"restore", "latest", "--to", "staging", "--drop-existing"}, "--overwrite"}, // root not empty
	} {
		_, errOut, code := runCLI(t, c.command(tc.args...))
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("shopvault %s: exit %d, want an error with %q:\n%s", strings.Join(tc.args, " "), code, tc.want, errOut)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "other")); len(entries) > 0 {
		t.Error("a refused staging restore wrote files")
	}
	// --overwrite --drop-existing repairs the tampered clone.
	c.run(t, "restore", "latest", "--to", "staging", "--overwrite", "--drop-existing")
	c.run(t, "verify", "--to", "staging")
}
