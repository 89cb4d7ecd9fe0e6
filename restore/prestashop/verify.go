package prestashop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Check is one item of the verification checklist.
type Check struct {
	What     string `json:"what"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	OK       bool   `json:"ok"`
}

type checklist []Check

func (c *checklist) add(what, expected, got string) {
	*c = append(*c, Check{What: what, Expected: expected, Got: got, OK: expected == got})
}

// secretCheck compares without printing the value.
func (c *checklist) addSecret(what string, want, got string) {
	g := "unchanged"
	if want != got {
		g = "CHANGED"
	}
	*c = append(*c, Check{What: what, Expected: "unchanged", Got: g, OK: want == got})
}

// Verify reads every rewrite back from the files and the database and
// returns the checklist. shop must be the one Detect returned before the
// rewrite (its Secrets and Domains are the reference); db is connected to
// the staging database, or nil to check the files only. The returned error
// is for failures to check (I/O, SQL), not for failed checks: look at OK.
func Verify(ctx context.Context, db *sql.DB, shop *Shop, t Target) ([]Check, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	var c checklist
	if err := verifyFiles(shop, t, &c); err != nil {
		return c, err
	}
	if db == nil {
		return c, nil
	}
	if err := verifyDatabase(ctx, db, shop, t, &c); err != nil {
		return c, err
	}
	return c, nil
}

// Failed returns the checks that did not pass.
func Failed(checks []Check) []Check {
	var out []Check
	for _, c := range checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

func verifyFiles(shop *Shop, t Target, c *checklist) error {
	now, err := Detect(shop.Root)
	if err != nil {
		c.add("shop configuration readable", "yes", err.Error())
		return nil
	}
	src := now.ConfigFile
	if len(now.EnvFiles) > 0 {
		src += " + " + strings.Join(now.EnvFiles, ", ")
	}
	c.add("database host as the shop sees it ("+src+")", t.DBHost, now.DB.Host)
	c.add("database port as the shop sees it", portString(t.DBPort), portString(now.DB.Port))
	c.add("database name as the shop sees it", t.DBName, now.DB.Name)
	c.add("database user as the shop sees it", t.DBUser, now.DB.User)
	pw := "matches target"
	if now.DB.Password != t.DBPassword {
		pw = "differs from target"
	}
	c.add("database password as the shop sees it", "matches target", pw)
	c.add("table prefix", shop.DB.Prefix, now.DB.Prefix)
	for _, k := range sortedKeys(shop.Secrets) {
		c.addSecret("secret "+k, shop.Secrets[k], now.Secrets[k])
	}
	if now.LegacySettings {
		b, err := os.ReadFile(now.path(SettingsFile))
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		defs, err := parseDefines(b)
		if err != nil {
			c.add(SettingsFile+" parses", "yes", err.Error())
		} else {
			vals := map[string]string{}
			for _, d := range defs {
				vals[d.name], _ = d.value.literal()
			}
			server := t.DBHost
			if t.DBPort != 0 {
				server += ":" + strconv.Itoa(t.DBPort)
			}
			c.add(SettingsFile+" _DB_SERVER_ (1.6 leftover)", server, vals["_DB_SERVER_"])
			c.add(SettingsFile+" _DB_NAME_ (1.6 leftover)", t.DBName, vals["_DB_NAME_"])
			c.add(SettingsFile+" _DB_USER_ (1.6 leftover)", t.DBUser, vals["_DB_USER_"])
		}
	}
	for _, rel := range sortedKeys(cacheDirs(shop)) {
		n, err := countCacheFiles(shop.path(rel), cacheDirs(shop)[rel])
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if n >= 0 {
			c.add(rel+" emptied", "0 cached files", fmt.Sprintf("%d cached files", n))
		}
	}
	if b, err := os.ReadFile(shop.path(HtaccessFile)); err == nil {
		for _, d := range dedupe(append(append([]string{}, shop.Domains...), t.ExtraDomains...)) {
			if d == t.Domain {
				continue
			}
			_, n := replaceHosts(string(b), []string{d}, t.Domain)
			c.add(HtaccessFile+" mentions "+d, "0 times", fmt.Sprintf("%d times", n))
		}
		if len(shop.Domains) > 0 {
			got := "missing"
			if contains(htaccessDomains(string(b)), t.Domain) {
				got = "present"
			}
			c.add(HtaccessFile+" #Domain: "+t.Domain, "present", got)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("verify: %w", err)
	}
	if !t.KeepRobots {
		b, _ := os.ReadFile(shop.path(RobotsFile))
		got := "missing"
		if strings.Contains(string(b), "Disallow: /\n") {
			got = "Disallow: /"
		}
		c.add(RobotsFile, "Disallow: /", got)
	}
	return nil
}

// countCacheFiles counts what emptyCaches would remove; -1 when the
// directory does not exist.
func countCacheFiles(dir string, all bool) (int, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return -1, nil
	}
	if all {
		entries, err := os.ReadDir(dir)
		return len(entries), err
	}
	n := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != "index.php" && d.Name() != ".htaccess" {
			n++
		}
		return nil
	})
	return n, err
}

func verifyDatabase(ctx context.Context, db *sql.DB, shop *Shop, t Target, c *checklist) error {
	tb, err := shopTables(shop)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	urls, err := readShopURLs(ctx, db, tb)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if len(urls) == 0 {
		c.add(tb.prefix+"shop_url rows", "at least 1", "0")
	}
	for _, u := range urls {
		w := wantShopURL(u, t)
		p := fmt.Sprintf("%sshop_url %d ", tb.prefix, u.id)
		c.add(p+"domain", w.domain, u.domain)
		c.add(p+"domain_ssl", w.domainSSL, u.domainSSL)
		if t.PhysicalURI != "" {
			c.add(p+"physical_uri", t.PhysicalURI, u.physical)
		}
	}
	rows, err := db.QueryContext(ctx, "SELECT id_configuration, name, id_shop_group, id_shop, value FROM "+tb.of("configuration")+
		" WHERE name IN ('PS_SHOP_DOMAIN', 'PS_SHOP_DOMAIN_SSL') ORDER BY id_configuration")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for rows.Next() {
		var id int64
		var name string
		var group, idShop sql.NullInt64
		var value sql.NullString
		if err := rows.Scan(&id, &name, &group, &idShop, &value); err != nil {
			rows.Close()
			return fmt.Errorf("verify: %w", err)
		}
		c.add(fmt.Sprintf("%s (%s)", name, scope(group, idShop)), wantDomainConfig(name, idShop, t), value.String)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	want := []Setting{{Name: "PS_MAIL_METHOD", Value: "3"}}
	if t.Maintenance {
		want = append(want, Setting{Name: "PS_SHOP_ENABLE", Value: "0"}, Setting{Name: "PS_MAINTENANCE_IP", Value: t.MaintenanceIP})
	}
	for _, s := range want {
		if err := checkSetting(ctx, db, tb, s, true, c); err != nil {
			return err
		}
	}
	opt := []Setting{{Name: "PS_MEDIA_SERVER_1"}, {Name: "PS_MEDIA_SERVER_2"}, {Name: "PS_MEDIA_SERVER_3"}}
	if t.DisableSSL {
		opt = append(opt, Setting{Name: "PS_SSL_ENABLED", Value: "0"}, Setting{Name: "PS_SSL_ENABLED_EVERYWHERE", Value: "0"})
	}
	if t.DisableWebservice {
		opt = append(opt, Setting{Name: "PS_WEBSERVICE", Value: "0"})
	}
	opt = append(opt, t.ModuleSettings...)
	for _, s := range opt {
		if err := checkSetting(ctx, db, tb, s, false, c); err != nil {
			return err
		}
	}
	if t.DisableWebservice && tableExists(ctx, db, tb.prefix+"webservice_account") {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tb.of("webservice_account")+" WHERE active <> 0").Scan(&n); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		c.add("active webservice keys", "0", strconv.Itoa(n))
	}
	if t.ClearSessions {
		for _, name := range []string{"customer_session", "employee_session"} {
			if !tableExists(ctx, db, tb.prefix+name) {
				continue
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tb.of(name)).Scan(&n); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			c.add(tb.prefix+name+" rows", "0", strconv.Itoa(n))
		}
	}
	return nil
}

func scope(group, shop sql.NullInt64) string {
	switch {
	case shop.Valid:
		return fmt.Sprintf("shop %d", shop.Int64)
	case group.Valid:
		return fmt.Sprintf("shop group %d", group.Int64)
	}
	return "global"
}

// checkSetting adds one check per row named s.Name. A setting that must
// exist and has no row is a failed check; an optional one is skipped.
func checkSetting(ctx context.Context, db *sql.DB, tb tables, s Setting, required bool, c *checklist) error {
	rows, err := db.QueryContext(ctx, "SELECT id_shop_group, id_shop, value FROM "+tb.of("configuration")+" WHERE name = ? ORDER BY id_configuration", s.Name)
	if err != nil {
		return fmt.Errorf("verify %s: %w", s.Name, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var group, idShop sql.NullInt64
		var value sql.NullString
		if err := rows.Scan(&group, &idShop, &value); err != nil {
			return fmt.Errorf("verify %s: %w", s.Name, err)
		}
		c.add(fmt.Sprintf("%s (%s)", s.Name, scope(group, idShop)), s.Value, value.String)
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify %s: %w", s.Name, err)
	}
	if n == 0 && required {
		c.add(s.Name, s.Value, "no row")
	}
	return nil
}
