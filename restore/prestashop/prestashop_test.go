package prestashop

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// copyTree copies testdata/<name> into a temporary directory, keeping modes.
func setMode(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("testdata", name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o600); err != nil {
			return err
		}
		return os.Chmod(target, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stagingPassword needs every kind of escaping: PHP quotes and backslashes,
// dotenv quotes, a dollar sign.
const stagingPassword = `st'ag\ing"pw\\$HOME`

func target() Target {
	return Target{
		DBHost: "127.0.0.1", DBPort: 3307, DBName: "staging_db", DBUser: "staging_user", DBPassword: stagingPassword,
		Domain: "staging.example.org",
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		dir      string
		series   string
		version  string
		config   string
		db       DBParams
		admin    string
		legacy   bool
		envFiles []string
		domains  []string
		secrets  []string
	}{
		{
			dir: "shop16", series: Series16, version: "1.6.1.12", config: SettingsFile,
			db:    DBParams{Host: "db.prod.internal", Port: 3307, Name: "shop16_prod", User: "shop16", Password: `pr0d'pass\word`, Prefix: "ps16_"},
			admin: "admin123abc", domains: []string{"www.oldshop.example.net"},
			secrets: []string{"_COOKIE_IV_", "_COOKIE_KEY_", "_RIJNDAEL_IV_", "_RIJNDAEL_KEY_"},
		},
		{
			dir: "shop17", series: Series17, version: "1.7.8.7", config: ParametersFile,
			db:    DBParams{Host: "127.0.0.1", Name: "shop17_prod", User: "shop17", Password: `it's a \secret\ pass`, Prefix: "shop_"},
			admin: "admin-x9k2", legacy: true, domains: []string{"www.shop17.example.com"},
			secrets: []string{"cookie_iv", "cookie_key", "new_cookie_key", "secret"},
		},
		{
			dir: "shop8", series: Series8, version: "8.1.7", config: ParametersFile,
			db:      DBParams{Host: "db.internal", Port: 3306, Name: "shop8", User: "shop8", Password: `p@ss"w$rd`, Prefix: "ps_"},
			admin:   "admin987zyx",
			secrets: []string{"cookie_iv", "cookie_key", "new_cookie_key", "secret"},
		},
		{
			dir: "shop9", series: Series9, version: "9.0.0", config: ParametersFile,
			// .env overrides host, name, user and password; .env.local overrides the password again.
			db:       DBParams{Host: "db.prod.internal", Name: "ps9_prod", User: "ps9", Password: `local "override" \ pass`, Prefix: "ps_"},
			admin:    "admin042kq8xabcdefghijklmnop",
			envFiles: []string{".env", ".env.local"}, domains: []string{"shop.example.com"},
			secrets: []string{"api_private_key", "api_public_key", "cookie_iv", "cookie_key", "env:PS_COOKIE_KEY", "new_cookie_key", "secret"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			s, err := Detect(filepath.Join("testdata", tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			if s.Series != tt.series || s.Version != tt.version || s.ConfigFile != tt.config {
				t.Errorf("series/version/config = %s/%s/%s, want %s/%s/%s", s.Series, s.Version, s.ConfigFile, tt.series, tt.version, tt.config)
			}
			if !reflect.DeepEqual(s.DB, tt.db) {
				t.Errorf("DB = %+v\nwant %+v", s.DB, tt.db)
			}
			if s.AdminDir != tt.admin {
				t.Errorf("AdminDir = %q, want %q", s.AdminDir, tt.admin)
			}
			if s.LegacySettings != tt.legacy {
				t.Errorf("LegacySettings = %v", s.LegacySettings)
			}
			if !reflect.DeepEqual(s.EnvFiles, tt.envFiles) {
				t.Errorf("EnvFiles = %q, want %q", s.EnvFiles, tt.envFiles)
			}
			if !reflect.DeepEqual(s.Domains, tt.domains) {
				t.Errorf("Domains = %q, want %q", s.Domains, tt.domains)
			}
			if got := sortedKeys(s.Secrets); !reflect.DeepEqual(got, tt.secrets) {
				t.Errorf("secrets = %q, want %q", got, tt.secrets)
			}
		})
	}
}

func TestDetectSecretsValues(t *testing.T) {
	s, err := Detect("testdata/shop9")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Secrets["cookie_key"]; got != "TEST_ONLY_cookie_key_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR" {
		t.Errorf("cookie_key = %q", got)
	}
	if got := s.Secrets["api_public_key"]; !strings.HasPrefix(got, "-----BEGIN PUBLIC KEY-----\nTESTONLY") || !strings.HasSuffix(got, "-----END PUBLIC KEY-----\n") {
		t.Errorf("api_public_key = %q", got)
	}
	s8, err := Detect("testdata/shop8")
	if err != nil {
		t.Fatal(err)
	}
	if got := s8.Secrets["secret"]; got != "TEST_ONLY_secret_8_concatenated" {
		t.Errorf("concatenated secret = %q", got)
	}
}

func TestDetectNotPrestaShop(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, dir := range []string{"testdata/notashop", t.TempDir(), file} {
		_, err := Detect(dir)
		if !errors.Is(err, ErrNotPrestaShop) {
			t.Errorf("Detect(%s) = %v, want ErrNotPrestaShop", dir, err)
		}
	}
	// A 1.7 tree without parameters.php is a shop with a broken restore, not "no shop".
	root := copyTree(t, "shop17")
	os.Remove(filepath.Join(root, ParametersFile))
	_, err := Detect(root)
	if err == nil || errors.Is(err, ErrNotPrestaShop) || !strings.Contains(err.Error(), ParametersFile) {
		t.Errorf("missing parameters.php: %v", err)
	}
}

// unchangedLines fails unless before and after differ only in lines that
// contain one of the given markers.
func unchangedLines(t *testing.T, name, before, after string, markers ...string) {
	t.Helper()
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(a) != len(b) {
		t.Fatalf("%s: %d lines, was %d", name, len(a), len(b))
	}
	for i := range b {
		if a[i] == b[i] {
			continue
		}
		ok := false
		for _, m := range markers {
			if strings.Contains(b[i], m) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s line %d changed:\n  was %q\n  now %q", name, i+1, b[i], a[i])
		}
	}
}

func TestRewriteFiles17(t *testing.T) {
	root := copyTree(t, "shop17")
	// git keeps only 0644/0755, so the restrictive modes a real shop has
	// are set here, not taken from the checkout.
	setMode(t, filepath.Join(root, ParametersFile), 0o440)
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	params := filepath.Join(root, ParametersFile)
	before := readFile(t, params)
	beforeSettings := readFile(t, filepath.Join(root, SettingsFile))
	rep, err := RewriteFiles(shop, target())
	if err != nil {
		t.Fatal(err)
	}
	after := readFile(t, params)
	// Exactly the five database lines changed, with PHP single-quote escaping.
	for _, want := range []string{
		"    'database_host' => '127.0.0.1',\n",
		"    'database_port' => '3307',\n",
		"    'database_name' => 'staging_db',\n",
		"    'database_user' => 'staging_user',\n",
		`    'database_password' => 'st\'ag\\ing"pw\\\\$HOME',` + "\n",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("parameters.php lacks %q:\n%s", want, after)
		}
	}
	unchangedLines(t, ParametersFile, before, after, "'database_host'", "'database_port'", "'database_name'", "'database_user'", "'database_password'")
	if fi, err := os.Stat(params); err != nil || fi.Mode().Perm() != 0o440 {
		t.Errorf("mode of parameters.php: %v %v, want 0440", fi.Mode(), err)
	}
	// The 1.6 leftover is rewritten too, its cookie key untouched.
	settings := readFile(t, filepath.Join(root, SettingsFile))
	for _, want := range []string{
		"define('_DB_SERVER_', '127.0.0.1:3307');",
		"define('_DB_NAME_', 'staging_db');",
		"define('_DB_USER_', 'staging_user');",
		`define('_DB_PASSWD_', 'st\'ag\\ing"pw\\\\$HOME');`,
	} {
		if !strings.Contains(settings, want) {
			t.Errorf("settings.inc.php lacks %q:\n%s", want, settings)
		}
	}
	unchangedLines(t, SettingsFile, beforeSettings, settings, "_DB_SERVER_", "_DB_NAME_", "_DB_USER_", "_DB_PASSWD_")

	// Caches: var/cache emptied completely, cache/ and the theme CCC cache
	// emptied except their index.php guards; logs and images untouched.
	if entries, _ := os.ReadDir(filepath.Join(root, "var/cache")); len(entries) != 0 {
		t.Errorf("var/cache still has %d entries", len(entries))
	}
	for _, gone := range []string{"cache/cachefs/abc", "themes/classic/assets/cache/theme-123.css"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed", gone)
		}
	}
	for _, kept := range []string{"cache/index.php", "var/logs/prod.log", "img/p/1/1.jpg"} {
		if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}

	// .htaccess: every whole production host name replaced, the CDN and the
	// bare domain (other names) left alone.
	ht := readFile(t, filepath.Join(root, HtaccessFile))
	for _, want := range []string{
		"#Domain: staging.example.org\n",
		"RewriteCond %{HTTP_HOST} ^staging.example.org$\nRewriteRule ^([0-9])",
		"RewriteRule ^(.*)$ https://staging.example.org/$1 [R=301,L]",
		"RewriteCond %{HTTP_HOST} ^static.shop17.example.com$ [OR]",
		"RewriteCond %{HTTP_HOST} ^shop17\\.example\\.com$ [NC]",
	} {
		if !strings.Contains(ht, want) {
			t.Errorf(".htaccess lacks %q:\n%s", want, ht)
		}
	}
	if strings.Contains(ht, "www.shop17") {
		t.Errorf(".htaccess still names www.shop17:\n%s", ht)
	}
	if got := readFile(t, filepath.Join(root, RobotsFile)); !strings.Contains(got, "Disallow: /\n") || strings.Contains(got, "shop17") {
		t.Errorf("robots.txt = %q", got)
	}
	wantFiles := []string{ParametersFile, SettingsFile, HtaccessFile, RobotsFile}
	if !reflect.DeepEqual(rep.Files, wantFiles) {
		t.Errorf("report files = %q, want %q", rep.Files, wantFiles)
	}
}

func TestRewriteFiles16(t *testing.T) {
	root := copyTree(t, "shop16")
	setMode(t, filepath.Join(root, SettingsFile), 0o640)
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(root, SettingsFile))
	tg := target()
	tg.DBPort = 0
	tg.PhysicalURI = "/shop/"
	if _, err := RewriteFiles(shop, tg); err != nil {
		t.Fatal(err)
	}
	after := readFile(t, filepath.Join(root, SettingsFile))
	if !strings.Contains(after, "define('_DB_SERVER_', '127.0.0.1');\n") {
		t.Errorf("settings.inc.php:\n%s", after)
	}
	unchangedLines(t, SettingsFile, before, after, "_DB_SERVER_", "_DB_NAME_", "_DB_USER_", "_DB_PASSWD_")
	if fi, _ := os.Stat(filepath.Join(root, SettingsFile)); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
	for _, gone := range []string{"cache/class_index.php", "cache/smarty/compile/abc.file.tpl.php", "cache/smarty/cache/page.html", "themes/default-bootstrap/cache/v_1_all.css"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not removed", gone)
		}
	}
	for _, kept := range []string{"cache/index.php", "cache/smarty/compile/index.php", "img/p/1.jpg"} {
		if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
	want := strings.NewReplacer("www.oldshop.example.net", "staging.example.org", "REWRITEBASE:/]", "REWRITEBASE:/shop/]").Replace(readFile(t, "testdata/shop16/.htaccess"))
	if got := readFile(t, filepath.Join(root, HtaccessFile)); got != want {
		t.Errorf(".htaccess:\n%s\nwant:\n%s", got, want)
	}
}

func TestRewriteFiles9Env(t *testing.T) {
	root := copyTree(t, "shop9")
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	envBefore := readFile(t, filepath.Join(root, ".env"))
	if _, err := RewriteFiles(shop, target()); err != nil {
		t.Fatal(err)
	}
	env := readFile(t, filepath.Join(root, ".env"))
	// The variables keep their lines, "export" and trailing comment; values
	// are single-quoted, a single quote as a "'" segment.
	for _, want := range []string{
		"export PS_DATABASE_HOST='127.0.0.1'   # the production server\n",
		"PS_DATABASE_NAME='staging_db'\n",
		"PS_DATABASE_USER='staging_user'\n",
		`PS_DATABASE_PASSWORD='st'"'"'ag\ing"pw\\$HOME'` + "\n",
		"PS_COOKIE_KEY=TEST_ONLY_cookie_key_from_env_0123456789\n",
	} {
		if !strings.Contains(env, want) {
			t.Errorf(".env lacks %q:\n%s", want, env)
		}
	}
	unchangedLines(t, ".env", envBefore, env, "PS_DATABASE_HOST", "PS_DATABASE_NAME", "PS_DATABASE_USER", "PS_DATABASE_PASSWORD")
	if got := readFile(t, filepath.Join(root, ".env.local")); got != `PS_DATABASE_PASSWORD='st'"'"'ag\ing"pw\\$HOME'`+"\n" {
		t.Errorf(".env.local = %q", got)
	}
	// No PS_DATABASE_PORT in .env: the port comes from parameters.php.
	if !strings.Contains(readFile(t, filepath.Join(root, ParametersFile)), "'database_port' => '3307',") {
		t.Error("parameters.php port not set")
	}
	// The shop, as PrestaShop would read it, now points at staging.
	again, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	want := DBParams{Host: "127.0.0.1", Port: 3307, Name: "staging_db", User: "staging_user", Password: stagingPassword, Prefix: "ps_"}
	if !reflect.DeepEqual(again.DB, want) {
		t.Errorf("after rewrite DB = %+v\nwant %+v", again.DB, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "var/cache")); len(entries) != 0 {
		t.Errorf("var/cache still has %d entries", len(entries))
	}
	checks, err := Verify(t.Context(), nil, shop, target())
	if err != nil {
		t.Fatal(err)
	}
	if bad := Failed(checks); len(bad) > 0 || len(checks) < 10 {
		t.Errorf("%d checks, failed: %+v", len(checks), bad)
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(root string)
		want   string // What of the failing check
	}{
		{"cookie key changed", func(root string) {
			p := filepath.Join(root, ParametersFile)
			os.WriteFile(p, []byte(strings.Replace(readFile(t, p), "TEST_ONLY_cookie_key_0123", "TEST_ONLY_cookie_key_9999", 1)), 0o644)
		}, "secret cookie_key"},
		{"env override back to production", func(root string) {
			os.WriteFile(filepath.Join(root, ".env.local"), []byte("PS_DATABASE_NAME=ps9_prod\n"), 0o644)
		}, "database name as the shop sees it"},
		{"cache refilled", func(root string) {
			os.MkdirAll(filepath.Join(root, "var/cache/prod"), 0o755)
		}, "var/cache emptied"},
		{"htaccess regenerated with production domain", func(root string) {
			os.WriteFile(filepath.Join(root, HtaccessFile), []byte("#Domain: shop.example.com\n"), 0o644)
		}, ".htaccess mentions shop.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := copyTree(t, "shop9")
			shop, err := Detect(root)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RewriteFiles(shop, target()); err != nil {
				t.Fatal(err)
			}
			tt.tamper(root)
			checks, err := Verify(t.Context(), nil, shop, target())
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, c := range Failed(checks) {
				if strings.HasPrefix(c.What, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no failed check %q; failed: %+v", tt.want, Failed(checks))
			}
		})
	}
}

func TestRewriteFilesRefusesBrokenConfig(t *testing.T) {
	tests := []struct {
		name    string
		shop    string
		file    string
		content string
		wantKey string
	}{
		{"missing user", "shop17", ParametersFile, "<?php return array('parameters' => array('database_host' => 'h', 'database_port' => '', 'database_name' => 'n', 'database_password' => 'p', 'database_prefix' => 'ps_'));", "database_user"},
		{"truncated", "shop17", ParametersFile, "<?php return array (\n  'parameters' => \n  array (\n    'database_host' => '127.0.0.1',\n    'database_name' => 'shop", ""},
		{"not an array", "shop8", ParametersFile, "<?php return $config;", ""},
		{"no port key but port needed", "shop17", ParametersFile, "<?php return array('parameters' => array('database_host' => 'h', 'database_name' => 'n', 'database_user' => 'u', 'database_password' => 'p', 'database_prefix' => 'ps_'));", "database_port"},
		{"1.6 missing password", "shop16", SettingsFile, "<?php\ndefine('_DB_SERVER_', 'h');\ndefine('_DB_NAME_', 'n');\ndefine('_DB_USER_', 'u');\ndefine('_DB_PREFIX_', 'ps_');\ndefine('_COOKIE_KEY_', 'k');\n", "_DB_PASSWD_"},
		{"broken env", "shop9", ".env.local", "PS_DATABASE_PASSWORD='unterminated\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := copyTree(t, tt.shop)
			shop, err := Detect(root)
			if err != nil {
				t.Fatal(err)
			}
			// The file breaks after Detect (as if edited meanwhile), or Detect itself must refuse.
			p := filepath.Join(root, tt.file)
			os.WriteFile(p, []byte(tt.content), 0o644)
			htBefore, _ := os.ReadFile(filepath.Join(root, HtaccessFile))
			_, err = RewriteFiles(shop, target())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *ConfigError", err)
			}
			if ce.File != tt.file || ce.Key != tt.wantKey {
				t.Errorf("ConfigError file/key = %q/%q, want %q/%q (%v)", ce.File, ce.Key, tt.file, tt.wantKey, err)
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("message does not name the file: %v", err)
			}
			if got := readFile(t, p); got != tt.content {
				t.Errorf("broken file was changed")
			}
			// Nothing else was touched either.
			if htAfter, _ := os.ReadFile(filepath.Join(root, HtaccessFile)); string(htAfter) != string(htBefore) {
				t.Error(".htaccess changed although the rewrite was refused")
			}
			if _, err := Detect(root); err == nil && tt.wantKey == "" {
				t.Error("Detect accepts the broken file")
			}
		})
	}
}

func TestRewriteFilesSymlinkedCacheLeftAlone(t *testing.T) {
	root := copyTree(t, "shop8")
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o644)
	os.RemoveAll(filepath.Join(root, "var/cache"))
	if err := os.Symlink(outside, filepath.Join(root, "var/cache")); err != nil {
		t.Fatal(err)
	}
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RewriteFiles(shop, target())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Error("a file outside the shop was removed through a symlink")
	}
	if len(rep.Warnings) == 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), "var/cache is a symbolic link") {
		t.Errorf("warnings = %q", rep.Warnings)
	}
}

func TestTargetValidate(t *testing.T) {
	bad := []func(*Target){
		func(t *Target) { t.Domain = "" },
		func(t *Target) { t.Domain = "https://x.example" },
		func(t *Target) { t.Domain = "a b" },
		func(t *Target) { t.PhysicalURI = "shop" },
		func(t *Target) { t.DBName = "" },
		func(t *Target) { t.DBHost = "h:3306" },
		func(t *Target) { t.ModuleSettings = []Setting{{Name: "X' OR 1=1"}} },
		func(t *Target) { t.ShopDomains = map[int]string{2: "bad domain"} },
	}
	for i, f := range bad {
		tg := target()
		f(&tg)
		if err := tg.Validate(); err == nil {
			t.Errorf("case %d: %+v accepted", i, tg)
		}
	}
	tg := target()
	if err := tg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestRewriteFilesRefusesSymlinkedConfig(t *testing.T) {
	root := copyTree(t, "shop8")
	outside := filepath.Join(t.TempDir(), "parameters.php")
	p := filepath.Join(root, ParametersFile)
	orig := readFile(t, p)
	os.WriteFile(outside, []byte(orig), 0o644)
	os.Remove(p)
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = RewriteFiles(shop, target())
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != ParametersFile || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("err = %v", err)
	}
	if readFile(t, outside) != orig {
		t.Error("file outside the shop was changed through a symlink")
	}
	if _, err := os.Stat(filepath.Join(root, RobotsFile)); err == nil {
		t.Error("robots.txt written although the rewrite was refused")
	}
	if _, err := os.Stat(filepath.Join(root, "var/cache/prod/appParameters.php")); err != nil {
		t.Error("cache emptied although the rewrite was refused")
	}
}

func TestEnvIgnoredBy17ButRewritten(t *testing.T) {
	root := copyTree(t, "shop17")
	os.WriteFile(filepath.Join(root, ".env"), []byte("PS_DATABASE_NAME=prod_from_env\n"), 0o644)
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if shop.DB.Name != "shop17_prod" || len(shop.EnvFiles) != 0 {
		t.Errorf("1.7 read .env: name %q, env files %q", shop.DB.Name, shop.EnvFiles)
	}
	if _, err := RewriteFiles(shop, target()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, ".env")); got != "PS_DATABASE_NAME='staging_db'\n" {
		t.Errorf(".env = %q", got)
	}
}

func TestEnvFileOrder(t *testing.T) {
	root := copyTree(t, "shop9")
	os.WriteFile(filepath.Join(root, ".env.local"), []byte("APP_ENV=prod\n"), 0o644)
	os.WriteFile(filepath.Join(root, ".env.prod"), []byte("PS_DATABASE_NAME=from_prod\n"), 0o644)
	os.WriteFile(filepath.Join(root, ".env.prod.local"), []byte("PS_DATABASE_USER=from_prod_local\n"), 0o644)
	os.WriteFile(filepath.Join(root, ".env.dev"), []byte("PS_DATABASE_NAME=from_dev\n"), 0o644)
	shop, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{".env", ".env.local", ".env.prod", ".env.prod.local"}; !reflect.DeepEqual(shop.EnvFiles, want) {
		t.Errorf("env files %q, want %q", shop.EnvFiles, want)
	}
	if shop.DB.Name != "from_prod" || shop.DB.User != "from_prod_local" || shop.DB.Password != "from-env" {
		t.Errorf("DB = %+v", shop.DB)
	}
	// All dotenv files are rewritten, also .env.dev which this APP_ENV does not load.
	if _, err := RewriteFiles(shop, target()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, ".env.dev")); got != "PS_DATABASE_NAME='staging_db'\n" {
		t.Errorf(".env.dev = %q", got)
	}
}
