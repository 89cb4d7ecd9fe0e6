package integration

import (
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopvault/shopvault/integration/mariadbtest"
	"github.com/shopvault/shopvault/restore/prestashop"
)

// copyShop copies a fixture shop of restore/prestashop/testdata into a
// temporary directory.
func copyShop(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "restore", "prestashop", "testdata", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// tableChecksums returns CHECKSUM TABLE ... EXTENDED of every table of the
// current database except those in skip.
func tableChecksums(t *testing.T, db *sql.DB, skip ...string) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		if !contains(skip, n) {
			names = append(names, "`"+n+"`")
		}
	}
	rows.Close()
	out := map[string]string{}
	rows, err = db.Query("CHECKSUM TABLE " + strings.Join(names, ", ") + " EXTENDED")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var sum sql.NullString
		if err := rows.Scan(&name, &sum); err != nil {
			t.Fatal(err)
		}
		out[name] = sum.String
	}
	if len(out) != len(names) {
		t.Fatalf("checksums of %d tables, want %d", len(out), len(names))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tableRows returns every row of a table, keyed by its first column, each
// row as "col=value" strings (NULL distinct from ”).
func tableRows(t *testing.T, db *sql.DB, table string) map[string][]string {
	t.Helper()
	rows, err := db.Query("SELECT * FROM `" + table + "`")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string][]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if v.Valid {
				row[i] = cols[i] + "=" + v.String
			} else {
				row[i] = cols[i] + " IS NULL"
			}
		}
		out[vals[0].String] = row
	}
	return out
}

// rowDiff describes how after differs from before: changed cells as
// "table:name/scope:column", added and removed rows.
func rowDiff(table string, before, after map[string][]string, label func(row []string) string) []string {
	var out []string
	for id, b := range before {
		a, ok := after[id]
		if !ok {
			out = append(out, fmt.Sprintf("%s: row %s removed", table, id))
			continue
		}
		for i := range b {
			if a[i] != b[i] {
				col, _, _ := strings.Cut(b[i], "=")
				col = strings.TrimSuffix(col, " IS NULL")
				out = append(out, fmt.Sprintf("%s:%s:%s", table, label(b), col))
			}
		}
	}
	for id, a := range after {
		if _, ok := before[id]; !ok {
			out = append(out, fmt.Sprintf("%s: row %s added (%s)", table, id, label(a)))
		}
	}
	sort.Strings(out)
	return out
}

func field(row []string, col string) string {
	for _, c := range row {
		if v, ok := strings.CutPrefix(c, col+"="); ok {
			return v
		}
		if c == col+" IS NULL" {
			return "NULL"
		}
	}
	return "?"
}

func configLabel(row []string) string {
	return field(row, "name") + "/" + field(row, "id_shop_group") + "," + field(row, "id_shop")
}

func shopURLLabel(row []string) string { return "url" + field(row, "id_shop_url") }

func hasWarning(rep *prestashop.Report, sub string) bool {
	for _, w := range rep.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

func TestPrestaShopStagingRewrite(t *testing.T) {
	s := mariadbtest.Start(t)
	s.LoadPrestaShop(t, "ps_stage")
	// Multistore leftovers: PS_SHOP_DOMAIN_SSL in a shop-group and a shop
	// scope (the seed already has a shop-scoped PS_SHOP_DOMAIN), and a
	// shop-scoped mail method.
	s.Exec(t, "ps_stage",
		"INSERT INTO ps_configuration (id_shop_group, id_shop, name, value, date_add, date_upd) VALUES "+
			"(1, NULL, 'PS_SHOP_DOMAIN_SSL', 'shop.example.com', '2025-07-03 08:00:00', '2025-07-03 08:00:00'),"+
			"(1, 1, 'PS_SHOP_DOMAIN_SSL', 'shop.example.com', '2025-07-03 08:00:00', '2025-07-03 08:00:00'),"+
			"(1, 1, 'PS_MAIL_METHOD', '1', '2025-07-03 08:00:00', '2025-07-03 08:00:00')")
	db := s.DB(t, "ps_stage")
	ctx := t.Context()

	root := copyShop(t, "shop9") // prefix ps_, .env overrides
	shop, err := prestashop.Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	tg := prestashop.Target{
		DBHost: "127.0.0.1", DBPort: s.Port, DBName: "ps_stage", DBUser: "root",
		Domain: "staging.example.org", PhysicalURI: "/",
		Maintenance: true, MaintenanceIP: "203.0.113.7",
		ModuleSettings: append(prestashop.DefaultModuleSettings(), prestashop.Setting{Name: "NOT_INSTALLED_MODULE_LIVE", Value: "0"}),
	}
	sumsBefore := tableChecksums(t, db, "ps_configuration", "ps_shop_url")
	cfgBefore := tableRows(t, db, "ps_configuration")
	urlBefore := tableRows(t, db, "ps_shop_url")

	start := time.Now()
	rep, err := prestashop.RewriteDatabase(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RewriteDatabase on the seeded 9.0 schema: %v", time.Since(start))

	// Every other table is unchanged, checksum for checksum.
	sumsAfter := tableChecksums(t, db, "ps_configuration", "ps_shop_url")
	if len(sumsAfter) != 227 {
		t.Errorf("%d other tables, want 227", len(sumsAfter))
	}
	for name, sum := range sumsBefore {
		if sumsAfter[name] != sum {
			t.Errorf("table %s changed (checksum %s -> %s)", name, sum, sumsAfter[name])
		}
	}
	// In the two rewritten tables exactly the intended cells changed.
	got := append(rowDiff("ps_configuration", cfgBefore, tableRows(t, db, "ps_configuration"), configLabel),
		rowDiff("ps_shop_url", urlBefore, tableRows(t, db, "ps_shop_url"), shopURLLabel)...)
	want := []string{
		"ps_configuration:PAYPAL_SANDBOX/NULL,NULL:value",
		"ps_configuration:PS_MAIL_METHOD/1,1:value",
		"ps_configuration:PS_MAIL_METHOD/NULL,NULL:value",
		"ps_configuration:PS_MAINTENANCE_IP/NULL,NULL:value",
		"ps_configuration:PS_MEDIA_SERVER_1/NULL,NULL:value",
		"ps_configuration:PS_SHOP_DOMAIN/1,1:value",
		"ps_configuration:PS_SHOP_DOMAIN/NULL,NULL:value",
		"ps_configuration:PS_SHOP_DOMAIN_SSL/1,1:value",
		"ps_configuration:PS_SHOP_DOMAIN_SSL/1,NULL:value",
		"ps_configuration:PS_SHOP_DOMAIN_SSL/NULL,NULL:value",
		"ps_configuration:PS_SHOP_ENABLE/NULL,NULL:value",
		"ps_shop_url:url1:domain",
		"ps_shop_url:url1:domain_ssl",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changed cells:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The values, read with plain SQL.
	var n int
	q := func(query string, args ...any) int {
		t.Helper()
		if err := db.QueryRow(query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	if q("SELECT COUNT(*) FROM ps_shop_url WHERE domain = 'staging.example.org' AND domain_ssl = 'staging.example.org' AND physical_uri = '/'") != 1 {
		t.Error("ps_shop_url not rewritten")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name IN ('PS_SHOP_DOMAIN', 'PS_SHOP_DOMAIN_SSL') AND value <> 'staging.example.org'") != 0 ||
		q("SELECT COUNT(*) FROM ps_configuration WHERE name IN ('PS_SHOP_DOMAIN', 'PS_SHOP_DOMAIN_SSL')") != 5 {
		t.Error("a PS_SHOP_DOMAIN(_SSL) row kept the production domain")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_MAIL_METHOD' AND value = '3'") != 2 ||
		q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_MAIL_METHOD' AND value <> '3'") != 0 {
		t.Error("e-mail is not off in every scope")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_SHOP_ENABLE' AND value = '0'") != 1 ||
		q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PS_MAINTENANCE_IP' AND value = '203.0.113.7'") != 1 {
		t.Error("maintenance mode not set")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'PAYPAL_SANDBOX' AND value = '1'") != 1 {
		t.Error("PayPal not switched to sandbox")
	}
	if q("SELECT COUNT(*) FROM ps_configuration WHERE name = 'NOT_INSTALLED_MODULE_LIVE'") != 0 {
		t.Error("a module setting of a module that is not installed was inserted")
	}
	// What stays live is reported.
	for _, w := range []string{"PAYPAL_EC_CLIENTID_LIVE", "webservice is on", "paypal", "NOT_INSTALLED_MODULE_LIVE not present"} {
		if !hasWarning(rep, w) {
			t.Errorf("no warning about %q: %q", w, rep.Warnings)
		}
	}
	if hasWarning(rep, "PayPal is in live mode") {
		t.Error("PayPal live-mode warning although it was switched to sandbox")
	}
	if !contains(rep.OldDomains, "shop.example.com") {
		t.Errorf("old domains = %q", rep.OldDomains)
	}

	// Files too, then the whole checklist from files and database.
	if _, err := prestashop.RewriteFiles(shop, tg); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	checks, err := prestashop.Verify(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Verify (files + database, %d checks): %v", len(checks), time.Since(start))
	if bad := prestashop.Failed(checks); len(bad) > 0 {
		t.Errorf("failed checks: %+v", bad)
	}
	if len(checks) < 25 {
		t.Errorf("only %d checks", len(checks))
	}

	// A second run changes nothing.
	cfgMid := tableRows(t, db, "ps_configuration")
	rep2, err := prestashop.RewriteDatabase(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	if d := rowDiff("ps_configuration", cfgMid, tableRows(t, db, "ps_configuration"), configLabel); len(d) > 0 {
		t.Errorf("second run changed %q", d)
	}
	for _, c := range rep2.Changes {
		if c.Count != 0 {
			t.Errorf("second run reports %+v", c)
		}
	}

	// Verify notices a value put back to production.
	s.Exec(t, "ps_stage", "UPDATE ps_configuration SET value = '2' WHERE name = 'PS_MAIL_METHOD' AND id_shop = 1")
	checks, err = prestashop.Verify(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	bad := prestashop.Failed(checks)
	if len(bad) != 1 || bad[0].What != "PS_MAIL_METHOD (shop 1)" || bad[0].Got != "2" {
		t.Errorf("failed checks after tampering: %+v", bad)
	}
}

func TestPrestaShopLiveWarningsAndPrefix(t *testing.T) {
	s := mariadbtest.Start(t)
	s.LoadPrestaShop(t, "ps_custom", "-p", "shop_", "-d", "www.shop17.example.com")
	db := s.DB(t, "ps_custom")
	ctx := t.Context()

	root := copyShop(t, "shop17") // prefix shop_
	shop, err := prestashop.Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if shop.DB.Prefix != "shop_" {
		t.Fatalf("prefix %q", shop.DB.Prefix)
	}
	tg := prestashop.Target{DBHost: "127.0.0.1", DBName: "ps_custom", DBUser: "root", Domain: "staging17.example.org", PhysicalURI: "/shop/", DisableWebservice: true, ClearSessions: true}
	sumsBefore := tableChecksums(t, db, "shop_configuration", "shop_shop_url", "shop_webservice_account", "shop_customer_session", "shop_employee_session")
	rep, err := prestashop.RewriteDatabase(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	// Without a module setting for it, PayPal's live mode is reported.
	if !hasWarning(rep, "PayPal is in live mode") {
		t.Errorf("no PayPal live-mode warning: %q", rep.Warnings)
	}
	if hasWarning(rep, "webservice is on") {
		t.Errorf("webservice warning after disabling it: %q", rep.Warnings)
	}
	for name, sum := range tableChecksums(t, db, "shop_configuration", "shop_shop_url", "shop_webservice_account", "shop_customer_session", "shop_employee_session") {
		if sumsBefore[name] != sum {
			t.Errorf("table %s changed", name)
		}
	}
	var domain, uri string
	if err := db.QueryRow("SELECT domain, physical_uri FROM shop_shop_url").Scan(&domain, &uri); err != nil || domain != "staging17.example.org" || uri != "/shop/" {
		t.Errorf("shop_shop_url = %q %q, %v", domain, uri, err)
	}
	var active, sessions int
	db.QueryRow("SELECT COUNT(*) FROM shop_webservice_account WHERE active = 1").Scan(&active)
	db.QueryRow("SELECT (SELECT COUNT(*) FROM shop_customer_session) + (SELECT COUNT(*) FROM shop_employee_session)").Scan(&sessions)
	if active != 0 || sessions != 0 {
		t.Errorf("active webservice keys %d, sessions %d; want 0, 0", active, sessions)
	}
	checks, err := prestashop.Verify(ctx, db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		// Files were not rewritten in this test: only database checks must pass.
		if !c.OK && (strings.Contains(c.What, "shop_url") || strings.HasPrefix(c.What, "PS_") || strings.Contains(c.What, "session") || strings.Contains(c.What, "webservice")) {
			t.Errorf("failed: %+v", c)
		}
	}

	// The prefix is never assumed: a shop configured with ps_ against this
	// database is refused with a message naming the missing table.
	wrong := *shop
	wrong.DB.Prefix = "ps_"
	_, err = prestashop.RewriteDatabase(ctx, db, &wrong, tg)
	if err == nil || !strings.Contains(err.Error(), "ps_shop_url not found") {
		t.Errorf("wrong prefix: %v", err)
	}
}

func TestPrestaShopMultistoreNeedsDomains(t *testing.T) {
	s := mariadbtest.Start(t)
	s.LoadPrestaShop(t, "ps_multi")
	s.Exec(t, "ps_multi",
		"INSERT INTO ps_shop (id_shop, id_shop_group, name, color, id_category, theme_name, active, deleted) VALUES (2, 1, 'Second', '', 2, 'classic', 1, 0)",
		"INSERT INTO ps_shop_url (id_shop_url, id_shop, domain, domain_ssl, physical_uri, virtual_uri, main, active) VALUES (2, 2, 'second.example.com', 'second.example.com', '/', '', 1, 1)",
		"INSERT INTO ps_configuration (id_shop_group, id_shop, name, value, date_add, date_upd) VALUES (1, 2, 'PS_SHOP_DOMAIN', 'second.example.com', NOW(), NOW())")
	db := s.DB(t, "ps_multi")
	shop, err := prestashop.Detect(copyShop(t, "shop9"))
	if err != nil {
		t.Fatal(err)
	}
	tg := prestashop.Target{DBHost: "127.0.0.1", DBName: "ps_multi", DBUser: "root", Domain: "staging.example.org"}
	before := tableRows(t, db, "ps_shop_url")
	if _, err := prestashop.RewriteDatabase(t.Context(), db, shop, tg); err == nil || !strings.Contains(err.Error(), "ShopDomains") {
		t.Fatalf("two shops onto one domain: %v", err)
	}
	if d := rowDiff("ps_shop_url", before, tableRows(t, db, "ps_shop_url"), shopURLLabel); len(d) > 0 {
		t.Errorf("refused rewrite changed %q", d)
	}
	tg.ShopDomains = map[int]string{2: "second.staging.example.org"}
	if _, err := prestashop.RewriteDatabase(t.Context(), db, shop, tg); err != nil {
		t.Fatal(err)
	}
	checks, err := prestashop.Verify(t.Context(), db, shop, tg)
	if err != nil {
		t.Fatal(err)
	}
	var d2, c2 string
	db.QueryRow("SELECT domain FROM ps_shop_url WHERE id_shop = 2").Scan(&d2)
	db.QueryRow("SELECT value FROM ps_configuration WHERE name = 'PS_SHOP_DOMAIN' AND id_shop = 2").Scan(&c2)
	if d2 != "second.staging.example.org" || c2 != "second.staging.example.org" {
		t.Errorf("shop 2: url %q, config %q", d2, c2)
	}
	for _, c := range checks {
		if !c.OK && (strings.Contains(c.What, "shop_url") || strings.HasPrefix(c.What, "PS_SHOP_DOMAIN")) {
			t.Errorf("failed: %+v", c)
		}
	}
}
