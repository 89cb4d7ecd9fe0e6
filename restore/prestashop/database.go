package prestashop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_]{0,64}$`)

// tables names the shop's tables with its own prefix.
type tables struct{ prefix string }

func (t tables) of(name string) string { return "`" + t.prefix + name + "`" }

func shopTables(shop *Shop) (tables, error) {
	for _, u := range shop.DB.Unknown {
		if u == "database_prefix" || u == "PS_DATABASE_PREFIX" {
			return tables{}, errors.New("the table prefix is computed at run time (getenv() or $VAR); set it as a literal in the shop's configuration")
		}
	}
	if !prefixRE.MatchString(shop.DB.Prefix) {
		return tables{}, fmt.Errorf("table prefix %q is not a plain identifier", shop.DB.Prefix)
	}
	return tables{prefix: shop.DB.Prefix}, nil
}

// paymentModules are module names known to move money or talk to a payment
// provider; an active one on a clone is reported.
var paymentModules = []string{"paypal", "ps_checkout", "stripe_official", "stripejs", "mollie", "payplug", "adyenofficial", "buckaroo3", "hipay_enterprise", "klarnapayments", "ps_mbo", "alma", "amazonpay", "braintreeofficial", "sumup", "paygreen", "lyra", "payzen", "systempay", "monei", "multisafepay", "mercadopago", "ps_accounts", "ps_eventbus"}

// RewriteDatabase makes the already loaded staging database safe and
// reachable under the staging domain, in one transaction on one connection
// with an empty sql_mode (as PrestaShop's own connections):
//
//   - every ps_shop_url row gets the staging domain, domain_ssl and, if set,
//     physical_uri (per shop with Target.ShopDomains);
//   - every PS_SHOP_DOMAIN and PS_SHOP_DOMAIN_SSL row, in every shop and
//     shop-group scope, gets the staging domain;
//   - e-mail sending is turned off (PS_MAIL_METHOD=3 in every row; a row is
//     added when none exists);
//   - CDN media servers (PS_MEDIA_SERVER_1..3) that point at production are
//     cleared;
//   - optionally: maintenance mode with an allowed IP list, SSL off,
//     webservice off, production sessions deleted;
//   - the configured module settings are forced where the setting exists.
//
// db must be connected to the staging database. The table prefix comes from
// shop.DB.Prefix. Live integrations that remain (PayPal live mode,
// webservice keys, payment modules) are returned as warnings.
func RewriteDatabase(ctx context.Context, db *sql.DB, shop *Shop, t Target) (*Report, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	tb, err := shopTables(shop)
	if err != nil {
		return nil, fmt.Errorf("rewrite database: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("rewrite database: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = ''"); err != nil {
		return nil, fmt.Errorf("rewrite database: set sql_mode: %w", err)
	}
	if err := requireTables(ctx, conn, tb, "shop_url", "configuration"); err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("rewrite database: %w", err)
	}
	defer tx.Rollback()
	rep := &Report{}
	if err := rewriteShopURLs(ctx, tx, tb, t, rep); err != nil {
		return nil, err
	}
	if err := rewriteDomainConfig(ctx, tx, tb, t, rep); err != nil {
		return nil, err
	}
	cfg := configWriter{tx: tx, tb: tb, rep: rep}
	cfg.set(ctx, "PS_MAIL_METHOD", "3", true, "e-mail off (3 = never send)")
	for _, name := range []string{"PS_MEDIA_SERVER_1", "PS_MEDIA_SERVER_2", "PS_MEDIA_SERVER_3"} {
		cfg.set(ctx, name, "", false, "production CDN host cleared")
	}
	if t.Maintenance {
		cfg.set(ctx, "PS_SHOP_ENABLE", "0", true, "shop closed (maintenance)")
		cfg.set(ctx, "PS_MAINTENANCE_IP", t.MaintenanceIP, true, "allowed during maintenance")
	}
	if t.DisableSSL {
		cfg.set(ctx, "PS_SSL_ENABLED", "0", false, "SSL off")
		cfg.set(ctx, "PS_SSL_ENABLED_EVERYWHERE", "0", false, "SSL off")
	}
	if t.DisableWebservice {
		cfg.set(ctx, "PS_WEBSERVICE", "0", false, "webservice off")
		if cfg.err == nil && tableExists(ctx, tx, tb.prefix+"webservice_account") {
			res, err := tx.ExecContext(ctx, "UPDATE "+tb.of("webservice_account")+" SET active = 0 WHERE active <> 0")
			if err != nil {
				return nil, fmt.Errorf("rewrite database: disable webservice keys: %w", err)
			}
			n, _ := res.RowsAffected()
			rep.add(tb.prefix+"webservice_account", "active = 0", n)
		}
	}
	for _, s := range t.ModuleSettings {
		if cfg.err == nil && !cfg.set(ctx, s.Name, s.Value, false, "module setting") {
			rep.warn("module setting %s not present in %sconfiguration (module not installed?); not added", s.Name, tb.prefix)
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if t.ClearSessions {
		for _, name := range []string{"customer_session", "employee_session"} {
			if !tableExists(ctx, tx, tb.prefix+name) {
				continue
			}
			res, err := tx.ExecContext(ctx, "DELETE FROM "+tb.of(name))
			if err != nil {
				return nil, fmt.Errorf("rewrite database: clear %s: %w", name, err)
			}
			n, _ := res.RowsAffected()
			rep.add(tb.prefix+name, "production sessions deleted", n)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("rewrite database: commit: %w", err)
	}
	if err := liveWarnings(ctx, conn, tb, shop, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func tableExists(ctx context.Context, q queryer, name string) bool {
	var n int
	err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", name).Scan(&n)
	return err == nil && n > 0
}

func requireTables(ctx context.Context, q queryer, tb tables, names ...string) error {
	for _, n := range names {
		if !tableExists(ctx, q, tb.prefix+n) {
			return fmt.Errorf("rewrite database: table %s%s not found: is the shop's database restored into this database, and is its prefix %q?", tb.prefix, n, tb.prefix)
		}
	}
	return nil
}

type shopURL struct {
	id, idShop                        int64
	domain, domainSSL, physical, virt string
}

func readShopURLs(ctx context.Context, q queryer, tb tables) ([]shopURL, error) {
	rows, err := q.QueryContext(ctx, "SELECT id_shop_url, id_shop, domain, domain_ssl, physical_uri, virtual_uri FROM "+tb.of("shop_url")+" ORDER BY id_shop_url")
	if err != nil {
		return nil, fmt.Errorf("read %sshop_url: %w", tb.prefix, err)
	}
	defer rows.Close()
	var out []shopURL
	for rows.Next() {
		var u shopURL
		if err := rows.Scan(&u.id, &u.idShop, &u.domain, &u.domainSSL, &u.physical, &u.virt); err != nil {
			return nil, fmt.Errorf("read %sshop_url: %w", tb.prefix, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %sshop_url: %w", tb.prefix, err)
	}
	return out, nil
}

// wantShopURL is what a shop_url row must look like on the clone.
func wantShopURL(u shopURL, t Target) shopURL {
	w := u
	w.domain, w.domainSSL = t.Domain, t.domainSSL()
	if d, ok := t.ShopDomains[int(u.idShop)]; ok {
		w.domain, w.domainSSL = d, d
	}
	if t.PhysicalURI != "" {
		w.physical = t.PhysicalURI
	}
	return w
}

func rewriteShopURLs(ctx context.Context, tx *sql.Tx, tb tables, t Target, rep *Report) error {
	urls, err := readShopURLs(ctx, tx, tb)
	if err != nil {
		return fmt.Errorf("rewrite database: %w", err)
	}
	if len(urls) == 0 {
		return fmt.Errorf("rewrite database: %sshop_url is empty: the restored database is not a working shop", tb.prefix)
	}
	seen, seenSSL := map[string]int64{}, map[string]int64{}
	for _, u := range urls {
		rep.addOldDomain(u.domain)
		rep.addOldDomain(u.domainSSL)
		w := wantShopURL(u, t)
		k := w.domain + "\x00" + w.physical + "\x00" + w.virt
		kSSL := w.domainSSL + "\x00" + w.physical + "\x00" + w.virt
		if other, ok := seen[k]; ok {
			return fmt.Errorf("rewrite database: shop URLs %d and %d would both become %s%s%s: this is a multistore shop; give each shop its own staging domain (ShopDomains)", other, u.id, w.domain, w.physical, w.virt)
		}
		if other, ok := seenSSL[kSSL]; ok {
			return fmt.Errorf("rewrite database: shop URLs %d and %d would both become %s%s%s (SSL): give each shop its own staging domain (ShopDomains)", other, u.id, w.domainSSL, w.physical, w.virt)
		}
		seen[k], seenSSL[kSSL] = u.id, u.id
	}
	// Two passes would be needed if a new value equalled another row's old
	// one under the unique keys; a temporary value first avoids that.
	if len(urls) > 1 {
		if _, err := tx.ExecContext(ctx, "UPDATE "+tb.of("shop_url")+" SET domain = CONCAT('shopvault-tmp-', id_shop_url), domain_ssl = CONCAT('shopvault-tmp-', id_shop_url)"); err != nil {
			return fmt.Errorf("rewrite database: %sshop_url: %w", tb.prefix, err)
		}
	}
	var n int64
	for _, u := range urls {
		w := wantShopURL(u, t)
		if w == u && len(urls) == 1 {
			continue
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+tb.of("shop_url")+" SET domain = ?, domain_ssl = ?, physical_uri = ? WHERE id_shop_url = ?", w.domain, w.domainSSL, w.physical, u.id); err != nil {
			return fmt.Errorf("rewrite database: %sshop_url row %d: %w", tb.prefix, u.id, err)
		}
		if w != u {
			n++
		}
	}
	rep.add(tb.prefix+"shop_url", fmt.Sprintf("domain = %s, domain_ssl = %s", t.Domain, t.domainSSL()), n)
	return nil
}

func (r *Report) addOldDomain(d string) {
	if d != "" && !contains(r.OldDomains, d) {
		r.OldDomains = append(r.OldDomains, d)
	}
}

func rewriteDomainConfig(ctx context.Context, tx *sql.Tx, tb tables, t Target, rep *Report) error {
	rows, err := tx.QueryContext(ctx, "SELECT id_configuration, name, id_shop, value FROM "+tb.of("configuration")+
		" WHERE name IN ('PS_SHOP_DOMAIN', 'PS_SHOP_DOMAIN_SSL') ORDER BY id_configuration")
	if err != nil {
		return fmt.Errorf("rewrite database: read shop domains: %w", err)
	}
	type row struct {
		id     int64
		name   string
		idShop sql.NullInt64
		value  sql.NullString
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.name, &r.idShop, &r.value); err != nil {
			rows.Close()
			return fmt.Errorf("rewrite database: read shop domains: %w", err)
		}
		list = append(list, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rewrite database: read shop domains: %w", err)
	}
	var n int64
	for _, r := range list {
		rep.addOldDomain(r.value.String)
		want := wantDomainConfig(r.name, r.idShop, t)
		if r.value.Valid && r.value.String == want {
			continue
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+tb.of("configuration")+" SET value = ? WHERE id_configuration = ?", want, r.id); err != nil {
			return fmt.Errorf("rewrite database: %s row %d: %w", r.name, r.id, err)
		}
		n++
	}
	rep.add(tb.prefix+"configuration", "PS_SHOP_DOMAIN, PS_SHOP_DOMAIN_SSL in every scope", n)
	return nil
}

func wantDomainConfig(name string, idShop sql.NullInt64, t Target) string {
	if idShop.Valid {
		if d, ok := t.ShopDomains[int(idShop.Int64)]; ok {
			return d
		}
	}
	if name == "PS_SHOP_DOMAIN_SSL" {
		return t.domainSSL()
	}
	return t.Domain
}

// configWriter sets ps_configuration values, keeping the first error.
type configWriter struct {
	tx  *sql.Tx
	tb  tables
	rep *Report
	err error
}

// set updates every row named name. When none exists it inserts a global
// row if insert is true. It reports whether the setting exists now.
func (c *configWriter) set(ctx context.Context, name, value string, insert bool, why string) bool {
	if c.err != nil {
		return false
	}
	var total, differ int64
	err := c.tx.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(value IS NULL OR value <> ?), 0) FROM "+c.tb.of("configuration")+" WHERE name = ?", value, name).Scan(&total, &differ)
	if err != nil {
		c.err = fmt.Errorf("rewrite database: read %s: %w", name, err)
		return false
	}
	if total == 0 {
		if !insert {
			return false
		}
		if _, err := c.tx.ExecContext(ctx, "INSERT INTO "+c.tb.of("configuration")+" (id_shop_group, id_shop, name, value, date_add, date_upd) VALUES (NULL, NULL, ?, ?, NOW(), NOW())", name, value); err != nil {
			c.err = fmt.Errorf("rewrite database: add %s: %w", name, err)
			return false
		}
		c.rep.add(c.tb.prefix+"configuration", fmt.Sprintf("%s = %q added (%s)", name, value, why), 1)
		return true
	}
	if differ > 0 {
		if _, err := c.tx.ExecContext(ctx, "UPDATE "+c.tb.of("configuration")+" SET value = ? WHERE name = ? AND (value IS NULL OR value <> ?)", value, name, value); err != nil {
			c.err = fmt.Errorf("rewrite database: set %s: %w", name, err)
			return false
		}
	}
	c.rep.add(c.tb.prefix+"configuration", fmt.Sprintf("%s = %q (%s)", name, value, why), differ)
	return true
}

// liveWarnings lists what still talks to the outside world on the clone.
func liveWarnings(ctx context.Context, q queryer, tb tables, shop *Shop, rep *Report) error {
	cfg := tb.of("configuration")
	rows, err := q.QueryContext(ctx, "SELECT name, COALESCE(value, '') FROM "+cfg+
		" WHERE name IN ('PAYPAL_SANDBOX', 'STRIPE_MODE', 'PS_WEBSERVICE', 'PS_VERSION_DB') OR (name REGEXP '(^|_)LIVE(_|$)' AND name NOT LIKE 'PS\\_%' AND COALESCE(value, '') <> '') ORDER BY id_configuration")
	if err != nil {
		return fmt.Errorf("check live settings: %w", err)
	}
	var liveKeys []string
	webservice := false
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			rows.Close()
			return fmt.Errorf("check live settings: %w", err)
		}
		switch {
		case name == "PAYPAL_SANDBOX":
			if value != "1" {
				rep.warn("PayPal is in live mode (PAYPAL_SANDBOX=%q): payments on the clone would be real; add PAYPAL_SANDBOX=1 to the module settings", value)
			}
		case name == "STRIPE_MODE":
			rep.warn("STRIPE_MODE=%q is set: its meaning depends on the Stripe module (stripe_official: 1 = test; stripejs: 1 = live); check it by hand", value)
		case name == "PS_WEBSERVICE":
			webservice = webservice || value == "1"
		case name == "PS_VERSION_DB":
			if shop.Version != "" && value != shop.Version {
				rep.warn("database version %s differs from code version %s: an upgrade may be half done", value, shop.Version)
			}
		default:
			if !contains(liveKeys, name) {
				liveKeys = append(liveKeys, name)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check live settings: %w", err)
	}
	if len(liveKeys) > 0 {
		rep.warn("live credentials present in %sconfiguration: %s", tb.prefix, strings.Join(liveKeys, ", "))
	}
	if webservice && tableExists(ctx, q, tb.prefix+"webservice_account") {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tb.of("webservice_account")+" WHERE active = 1").Scan(&n); err != nil {
			return fmt.Errorf("check webservice keys: %w", err)
		}
		if n > 0 {
			rep.warn("the webservice is on (PS_WEBSERVICE=1) with %d active key(s): connectors (ERP, marketplaces) may write to the clone or act on its data; set DisableWebservice to turn it off", n)
		}
	}
	if tableExists(ctx, q, tb.prefix+"module") {
		args := make([]any, len(paymentModules))
		marks := make([]string, len(paymentModules))
		for i, m := range paymentModules {
			args[i], marks[i] = m, "?"
		}
		rows, err := q.QueryContext(ctx, "SELECT name FROM "+tb.of("module")+" WHERE active = 1 AND name IN ("+strings.Join(marks, ",")+") ORDER BY name", args...)
		if err != nil {
			return fmt.Errorf("check modules: %w", err)
		}
		var active []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return fmt.Errorf("check modules: %w", err)
			}
			active = append(active, name)
		}
		rows.Close()
		if len(active) > 0 {
			rep.warn("modules that talk to payment or cloud services are active: %s; check their sandbox settings", strings.Join(active, ", "))
		}
	}
	return nil
}
