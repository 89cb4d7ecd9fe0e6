// Package prestashop turns a restored copy of a PrestaShop shop into a safe
// staging clone: it finds the shop and its version in a web root, points its
// configuration files at the staging database, rewrites the domain, turns
// e-mail off, empties the caches, and reads every change back.
//
// The package never assumes the table prefix (it comes from the shop's own
// configuration) and never changes the shop's secrets (cookie_key and
// friends: customer and employee passwords depend on them). It does not
// print; what it did and what it could not do are returned as a Report.
package prestashop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrNotPrestaShop is returned by Detect when the directory does not look
// like a PrestaShop web root. The caller restores files and database as
// usual and skips the staging rewrite.
var ErrNotPrestaShop = errors.New("not recognised as PrestaShop")

// Series of PrestaShop versions that differ in where they keep things.
const (
	Series16 = "1.6" // config/settings.inc.php, cache/
	Series17 = "1.7" // app/config/parameters.php, var/cache/
	Series8  = "8"   // as 1.7, plus the optional root .env
	Series9  = "9"   // as 8, plus app/AdminKernel.php and friends
)

// Paths inside a shop, relative to its root, slash separated.
const (
	ParametersFile = "app/config/parameters.php"
	SettingsFile   = "config/settings.inc.php"
	HtaccessFile   = ".htaccess"
	RobotsFile     = "robots.txt"
)

// DBParams are database settings as the shop sees them.
type DBParams struct {
	Host     string
	Port     int // 0: default port
	Name     string
	User     string
	Password string
	Prefix   string // table prefix, e.g. "ps_"
	// Unknown lists settings whose value is computed by PHP code or comes
	// from the process environment (getenv(), $VAR in .env): the shop's
	// effective value cannot be known from the files.
	Unknown []string
}

// Shop is a PrestaShop installation found by Detect.
type Shop struct {
	Root    string // absolute path of the web root
	Series  string // Series16, Series17, Series8 or Series9
	Version string // exact code version ("9.0.0"), "" when not found
	// ConfigFile is the file that holds the database credentials, relative
	// to Root: ParametersFile or SettingsFile.
	ConfigFile string
	// LegacySettings is true when a 1.7+ shop still has a full
	// config/settings.inc.php with database defines (shops upgraded from
	// 1.6); RewriteFiles rewrites it too.
	LegacySettings bool
	// EnvFiles are the dotenv files PrestaShop loads, in load order (later
	// files win), relative to Root. Empty when there are none.
	EnvFiles []string
	// DB are the settings the shop uses, after .env overrides.
	DB DBParams
	// AdminDir is the renamed back-office directory ("admin042kq8x..."),
	// relative to Root; "" when not found.
	AdminDir string
	// Secrets holds the values of cookie_key, cookie_iv, new_cookie_key,
	// secret and friends (or _COOKIE_KEY_ ... for 1.6) as found by Detect,
	// so Verify can prove they were not changed.
	Secrets map[string]string
	// Domains are the production host names found in .htaccess
	// ("#Domain:" lines of PrestaShop's generated block).
	Domains []string
}

// secretParams are the parameters.php keys that must never change.
var secretParams = []string{"cookie_key", "cookie_iv", "new_cookie_key", "secret", "api_public_key", "api_private_key", "_rijndael_key", "_rijndael_iv"}

// secretDefines are the settings.inc.php constants that must never change.
var secretDefines = []string{"_COOKIE_KEY_", "_COOKIE_IV_", "_RIJNDAEL_KEY_", "_RIJNDAEL_IV_", "_NEW_COOKIE_KEY_"}

// Detect inspects a restored web root. When root is not a PrestaShop shop
// it returns an error that wraps ErrNotPrestaShop. When it is one but its
// configuration cannot be read, the error names the file and the problem.
func Detect(root string) (*Shop, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("detect %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("detect %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("detect %s: not a directory: %w", root, ErrNotPrestaShop)
	}
	s := &Shop{Root: abs, Secrets: map[string]string{}}
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(abs, filepath.FromSlash(rel)))
		return err == nil
	}
	hasParams := exists(ParametersFile)
	hasKernel := exists("app/AppKernel.php") || exists("app/AdminKernel.php")
	switch {
	case hasParams || hasKernel && exists("app/config"):
		s.Series = Series17
		if exists("app/AdminKernel.php") || exists("app/FrontKernel.php") || exists("app/AdminAPIKernel.php") || exists("admin-api") {
			s.Series = Series9
		}
		s.ConfigFile = ParametersFile
	case exists(SettingsFile) && exists("classes") && !exists("app"):
		s.Series = Series16
		s.ConfigFile = SettingsFile
	default:
		return nil, fmt.Errorf("detect %s: neither %s nor %s found: %w", root, ParametersFile, SettingsFile, ErrNotPrestaShop)
	}
	if s.Series != Series16 && !hasParams {
		if exists("app/config/parameters.yml") {
			return nil, fmt.Errorf("detect %s: %s is missing but app/config/parameters.yml exists (a shop installed by an early 1.7 build): open the shop once so PrestaShop converts it, then back up again", root, ParametersFile)
		}
		return nil, fmt.Errorf("detect %s: %s is missing: the restore is incomplete or the shop was never installed", root, ParametersFile)
	}
	s.Version = codeVersion(abs)
	if s.Series != Series16 && s.Series != Series9 && s.Version != "" {
		if major, _, _ := strings.Cut(s.Version, "."); major != "1" {
			s.Series = major
		}
	}
	if s.Series == Series9 && s.Version != "" && !strings.HasPrefix(s.Version, "9.") {
		// Kernel files of 9 but an unexpected version string: trust the string.
		major, _, _ := strings.Cut(s.Version, ".")
		if major == "1" {
			s.Series = Series17
		} else {
			s.Series = major
		}
	}
	if s.Series == Series16 {
		if err := s.readSettings(); err != nil {
			return nil, err
		}
	} else {
		if err := s.readParameters(); err != nil {
			return nil, err
		}
		// 1.7 has no .env support (ConfigurationVariablesLoader came with 8).
		if s.Series != Series17 {
			if err := s.readEnv(); err != nil {
				return nil, err
			}
		}
		s.LegacySettings = hasDBDefines(filepath.Join(abs, filepath.FromSlash(SettingsFile)))
	}
	s.AdminDir = findAdminDir(abs)
	if b, err := os.ReadFile(filepath.Join(abs, HtaccessFile)); err == nil {
		s.Domains = htaccessDomains(string(b))
	}
	return s, nil
}

var versionPatterns = []struct {
	file string
	re   *regexp.Regexp
}{
	{"src/Core/Version.php", regexp.MustCompile(`const\s+VERSION\s*=\s*'([0-9][0-9A-Za-z.\-]*)'`)},
	{"app/AppKernel.php", regexp.MustCompile(`const\s+VERSION\s*=\s*'([0-9][0-9A-Za-z.\-]*)'`)},
	{"config/settings.inc.php", regexp.MustCompile(`define\s*\(\s*'_PS_VERSION_'\s*,\s*'([0-9][0-9A-Za-z.\-]*)'`)},
	{"install/install_version.php", regexp.MustCompile(`_PS_INSTALL_VERSION_'\s*,\s*'([0-9][0-9A-Za-z.\-]*)'`)},
}

// codeVersion reads the version of the code from the files that carry it.
func codeVersion(root string) string {
	for _, p := range versionPatterns {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p.file)))
		if err != nil {
			continue
		}
		if m := p.re.FindSubmatch(b); m != nil {
			return string(m[1])
		}
	}
	return ""
}

// ConfigError reports a configuration file of the shop that cannot be read
// or rewritten safely. The file is left unchanged.
type ConfigError struct {
	File string // relative to the shop root
	Key  string // the setting concerned, "" for the whole file
	Err  error
}

func (e *ConfigError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %v; fix the file by hand or restore it from a good snapshot, then run the rewrite again", e.File, e.Key, e.Err)
	}
	return fmt.Sprintf("%s: %v; fix the file by hand or restore it from a good snapshot, then run the rewrite again", e.File, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func (s *Shop) path(rel string) string { return filepath.Join(s.Root, filepath.FromSlash(rel)) }

func (s *Shop) readParameters() error {
	src, err := os.ReadFile(s.path(ParametersFile))
	if err != nil {
		return fmt.Errorf("read %s: %w", ParametersFile, err)
	}
	pf, err := parseParameters(src)
	if err != nil {
		return &ConfigError{File: ParametersFile, Err: err}
	}
	get := func(key string) string {
		v, ok := pf.params.get(key)
		if !ok {
			return ""
		}
		lit, ok := v.literal()
		if !ok {
			s.DB.Unknown = append(s.DB.Unknown, key)
		}
		return lit
	}
	prefix, ok := pf.params.get("database_prefix")
	if !ok {
		return &ConfigError{File: ParametersFile, Key: "database_prefix", Err: errors.New("not found")}
	}
	s.DB.Host = get("database_host")
	s.DB.Name = get("database_name")
	s.DB.User = get("database_user")
	s.DB.Password = get("database_password")
	if lit, ok := prefix.literal(); ok {
		s.DB.Prefix = lit
	} else {
		s.DB.Unknown = append(s.DB.Unknown, "database_prefix")
	}
	if err := s.setPort(get("database_port"), ParametersFile, "database_port"); err != nil {
		return err
	}
	for _, k := range secretParams {
		if v, ok := pf.params.get(k); ok {
			lit, _ := v.literal()
			s.Secrets[k] = lit
		}
	}
	return nil
}

func (s *Shop) setPort(p, file, key string) error {
	p = strings.TrimSpace(p)
	if p == "" {
		s.DB.Port = 0
		return nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return &ConfigError{File: file, Key: key, Err: fmt.Errorf("%q is not a port number", p)}
	}
	s.DB.Port = n
	return nil
}

func (s *Shop) readSettings() error {
	src, err := os.ReadFile(s.path(SettingsFile))
	if err != nil {
		return fmt.Errorf("read %s: %w", SettingsFile, err)
	}
	defs, err := parseDefines(src)
	if err != nil {
		return &ConfigError{File: SettingsFile, Err: err}
	}
	vals := map[string]string{}
	defined := map[string]bool{}
	for _, d := range defs {
		if defined[d.name] {
			continue // PHP keeps the first define() of a constant
		}
		lit, ok := d.value.literal()
		if !ok {
			s.DB.Unknown = append(s.DB.Unknown, d.name)
		}
		vals[d.name], defined[d.name] = lit, true
	}
	for _, k := range []string{"_DB_SERVER_", "_DB_NAME_", "_DB_USER_", "_DB_PASSWD_", "_DB_PREFIX_"} {
		if !defined[k] {
			return &ConfigError{File: SettingsFile, Key: k, Err: errors.New("not defined")}
		}
	}
	host := vals["_DB_SERVER_"]
	if h, p, ok := strings.Cut(host, ":"); ok && !strings.Contains(p, ":") {
		host = h
		if err := s.setPort(p, SettingsFile, "_DB_SERVER_"); err != nil {
			return err
		}
	}
	s.DB.Host = host
	s.DB.Name = vals["_DB_NAME_"]
	s.DB.User = vals["_DB_USER_"]
	s.DB.Password = vals["_DB_PASSWD_"]
	s.DB.Prefix = vals["_DB_PREFIX_"]
	for _, k := range secretDefines {
		if defined[k] {
			s.Secrets[k] = vals[k]
		}
	}
	return nil
}

// envFileOrder returns the dotenv files Symfony's Dotenv::loadEnv reads for
// the root .env, in order: .env (or .env.dist), .env.local (not in the test
// environment), .env.<APP_ENV>, .env.<APP_ENV>.local. APP_ENV comes from
// the files read so far, "dev" by default.
func envFileOrder(root string, appEnv func(files []string) string) []string {
	exists := func(rel string) bool {
		fi, err := os.Stat(filepath.Join(root, rel))
		return err == nil && fi.Mode().IsRegular()
	}
	var files []string
	switch {
	case exists(".env"):
		files = append(files, ".env")
	case exists(".env.dist"):
		files = append(files, ".env.dist")
	default:
		return nil
	}
	env := appEnv(files)
	if env != "test" && exists(".env.local") {
		files = append(files, ".env.local")
		env = appEnv(files)
	}
	if env == "local" {
		return files
	}
	for _, f := range []string{".env." + env, ".env." + env + ".local"} {
		if exists(f) {
			files = append(files, f)
		}
	}
	return files
}

func (s *Shop) readEnv() error {
	parsed := map[string][]envAssign{}
	var perr error
	load := func(f string) []envAssign {
		if a, ok := parsed[f]; ok {
			return a
		}
		src, err := os.ReadFile(s.path(f))
		if err != nil {
			perr = errors.Join(perr, fmt.Errorf("read %s: %w", f, err))
			return nil
		}
		a, err := parseDotenv(src)
		if err != nil {
			perr = errors.Join(perr, &ConfigError{File: f, Err: err})
		}
		parsed[f] = a
		return a
	}
	appEnv := func(files []string) string {
		env := "dev"
		for _, f := range files {
			for _, a := range load(f) {
				if a.name == "APP_ENV" && a.value != "" {
					env = a.value
				}
			}
		}
		return env
	}
	s.EnvFiles = envFileOrder(s.Root, appEnv)
	if perr != nil {
		return perr
	}
	eff := map[string]envAssign{}
	for _, f := range s.EnvFiles {
		for _, a := range load(f) {
			eff[a.name] = a
		}
	}
	if perr != nil {
		return perr
	}
	apply := func(param string, dst *string) {
		a, ok := eff[envOverrides[param]]
		if !ok {
			return
		}
		*dst = a.value
		s.DB.Unknown = removeString(s.DB.Unknown, param)
		if !a.literal {
			s.DB.Unknown = append(s.DB.Unknown, envOverrides[param])
		}
	}
	apply("database_host", &s.DB.Host)
	apply("database_name", &s.DB.Name)
	apply("database_user", &s.DB.User)
	apply("database_password", &s.DB.Password)
	apply("database_prefix", &s.DB.Prefix)
	port := ""
	if _, ok := eff[envOverrides["database_port"]]; ok {
		apply("database_port", &port)
		if err := s.setPort(port, ".env", envOverrides["database_port"]); err != nil {
			return err
		}
	}
	for _, k := range secretParams {
		if a, ok := eff[envOverrides[k]]; ok && envOverrides[k] != "" {
			s.Secrets["env:"+envOverrides[k]] = a.value
		}
	}
	return nil
}

func removeString(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// hasDBDefines reports whether a settings.inc.php defines database settings
// (a 1.6 leftover in an upgraded shop, not the "//@deprecated 1.7" stub).
func hasDBDefines(path string) bool {
	src, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	defs, err := parseDefines(src)
	if err != nil {
		return strings.Contains(string(src), "_DB_")
	}
	for _, d := range defs {
		if strings.HasPrefix(d.name, "_DB_") {
			return true
		}
	}
	return false
}

// findAdminDir returns the top-level directory that looks like the shop's
// back office: an index.php plus several of the files and directories every
// PrestaShop admin directory has.
func findAdminDir(root string) string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	markers := []string{"init.php", "bootstrap.php", "filemanager", "themes", "backups", "import", "export", "autoupgrade", "get-file-admin.php", "header.inc.php", "ajax-tab.php"}
	best, bestScore := "", 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		switch e.Name() {
		case "themes", "modules", "img", "app", "var", "src", "vendor", "config", "classes", "controllers", "install", "cache":
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "index.php")); err != nil {
			continue
		}
		score := 0
		for _, m := range markers {
			if _, err := os.Stat(filepath.Join(dir, m)); err == nil {
				score++
			}
		}
		if score >= 3 && (score > bestScore || score == bestScore && strings.HasPrefix(e.Name(), "admin")) {
			best, bestScore = e.Name(), score
		}
	}
	return best
}

var htDomainLine = regexp.MustCompile(`(?m)^#Domain: *([A-Za-z0-9.\-]+(?::[0-9]+)?)\s*$`)

// htaccessDomains returns the host names PrestaShop wrote into its
// generated .htaccess block, in order of appearance, without duplicates.
func htaccessDomains(ht string) []string {
	var out []string
	for _, m := range htDomainLine.FindAllStringSubmatch(ht, -1) {
		if !contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
