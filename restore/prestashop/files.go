package prestashop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Setting is one ps_configuration value to force on the clone.
type Setting struct {
	Name  string
	Value string
}

// Target describes the staging clone.
type Target struct {
	DBHost     string
	DBPort     int // 0: the server's default port
	DBName     string
	DBUser     string
	DBPassword string

	Domain    string // host name (optionally host:port) the clone answers on
	DomainSSL string // "" means Domain
	// PhysicalURI is the path of the shop under the host ("/", "/shop/");
	// "" keeps the one in the database.
	PhysicalURI string
	// ShopDomains gives a domain per id_shop for multistore clones; shops
	// not listed get Domain.
	ShopDomains map[int]string

	Maintenance   bool   // close the shop to the public (PS_SHOP_ENABLE=0)
	MaintenanceIP string // comma-separated addresses still let in

	// ModuleSettings are ps_configuration values forced on every row of
	// that name (for example PAYPAL_SANDBOX=1). A name the clone does not
	// have is reported, not inserted.
	ModuleSettings []Setting

	DisableSSL        bool // PS_SSL_ENABLED=0 and PS_SSL_ENABLED_EVERYWHERE=0, for a clone without TLS
	DisableWebservice bool // PS_WEBSERVICE=0 and every webservice key inactive
	ClearSessions     bool // delete the customer and employee sessions of production
	KeepRobots        bool // keep robots.txt; by default it is replaced by "Disallow: /"

	// ExtraDomains are more production host names to replace in .htaccess
	// besides those PrestaShop listed there ("#Domain:" lines).
	ExtraDomains []string
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$`)

var settingNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,254}$`)

// DefaultModuleSettings is the built-in list of module settings that switch
// well-known live integrations to their sandbox. Only settings whose meaning
// is unambiguous are listed (STRIPE_MODE is not: two modules use it with
// opposite meanings).
func DefaultModuleSettings() []Setting {
	return []Setting{
		{Name: "PAYPAL_SANDBOX", Value: "1"},
	}
}

func (t *Target) domainSSL() string {
	if t.DomainSSL != "" {
		return t.DomainSSL
	}
	return t.Domain
}

// Validate checks the target and names the first bad field.
func (t *Target) Validate() error {
	if !hostRE.MatchString(t.Domain) {
		return fmt.Errorf("staging target: domain %q is not a host name", t.Domain)
	}
	if t.DomainSSL != "" && !hostRE.MatchString(t.DomainSSL) {
		return fmt.Errorf("staging target: domain_ssl %q is not a host name", t.DomainSSL)
	}
	for id, d := range t.ShopDomains {
		if !hostRE.MatchString(d) {
			return fmt.Errorf("staging target: domain %q of shop %d is not a host name", d, id)
		}
	}
	for _, d := range t.ExtraDomains {
		if !hostRE.MatchString(d) {
			return fmt.Errorf("staging target: production domain %q is not a host name", d)
		}
	}
	if t.PhysicalURI != "" && (!strings.HasPrefix(t.PhysicalURI, "/") || !strings.HasSuffix(t.PhysicalURI, "/") || strings.ContainsAny(t.PhysicalURI, " \t\r\n'\"\\?#")) {
		return fmt.Errorf("staging target: physical URI %q must start and end with '/' (e.g. \"/\" or \"/shop/\")", t.PhysicalURI)
	}
	if t.DBName == "" || t.DBUser == "" || t.DBHost == "" {
		return errors.New("staging target: database host, name and user must be set")
	}
	if t.DBPort < 0 || t.DBPort > 65535 {
		return fmt.Errorf("staging target: database port %d out of range", t.DBPort)
	}
	if strings.ContainsAny(t.DBHost, ":/ ") {
		return fmt.Errorf("staging target: database host %q: give the port separately", t.DBHost)
	}
	for _, s := range t.ModuleSettings {
		if !settingNameRE.MatchString(s.Name) {
			return fmt.Errorf("staging target: module setting name %q is not a configuration name", s.Name)
		}
	}
	if strings.ContainsAny(t.MaintenanceIP, "\r\n'\"") {
		return fmt.Errorf("staging target: maintenance IP list %q", t.MaintenanceIP)
	}
	return nil
}

// Change is one thing a rewrite did.
type Change struct {
	What   string `json:"what"`   // e.g. "app/config/parameters.php", "ps_shop_url"
	Detail string `json:"detail"` // e.g. "database_host, database_name"
	Count  int64  `json:"count"`  // rows or files affected, when that applies
}

// Report says what a rewrite changed and what it left for a human.
type Report struct {
	Changes  []Change `json:"changes"`
	Warnings []string `json:"warnings"`
	// Files are the files rewritten (relative to the shop root); removed
	// cache files are counted in Changes, not listed.
	Files []string `json:"files"`
	// OldDomains are the production host names RewriteDatabase found in
	// ps_shop_url and PS_SHOP_DOMAIN(_SSL) before replacing them; pass them
	// as Target.ExtraDomains to RewriteFiles when it runs afterwards.
	OldDomains []string `json:"old_domains,omitempty"`
}

func (r *Report) add(what, detail string, n int64) {
	r.Changes = append(r.Changes, Change{What: what, Detail: detail, Count: n})
}

func (r *Report) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

func portString(p int) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(p)
}

// pendingWrite is a file rewrite prepared in memory.
type pendingWrite struct {
	rel    string
	data   []byte
	detail string
}

// RewriteFiles points the shop's configuration files at the staging
// database, replaces the production domain in .htaccess, writes a robots.txt
// that keeps crawlers out, and empties the caches that hold copies of the
// old settings. The secrets (cookie_key, cookie_iv, new_cookie_key, secret,
// ...) and every other byte of the configuration files stay as they were.
//
// All configuration edits are prepared and checked before the first write;
// when one cannot be made safely (a setting is missing, a file does not
// parse) RewriteFiles returns a *ConfigError and changes nothing. Each file
// is replaced atomically, keeping its mode and owner.
func RewriteFiles(shop *Shop, t Target) (*Report, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{}
	var writes []pendingWrite

	dbValues := map[string]string{
		"database_host":     t.DBHost,
		"database_name":     t.DBName,
		"database_user":     t.DBUser,
		"database_password": t.DBPassword,
	}
	if shop.Series != Series16 {
		src, err := os.ReadFile(shop.path(ParametersFile))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", ParametersFile, err)
		}
		pf, err := parseParameters(src)
		if err != nil {
			return nil, &ConfigError{File: ParametersFile, Err: err}
		}
		if _, ok := pf.params.get("database_port"); ok {
			dbValues["database_port"] = portString(t.DBPort)
		} else if t.DBPort != 0 {
			return nil, &ConfigError{File: ParametersFile, Key: "database_port", Err: errors.New("not found, but the staging database needs a port")}
		}
		out, err := setParameters(src, dbValues)
		if err != nil {
			var ke *KeyError
			if errors.As(err, &ke) {
				return nil, &ConfigError{File: ParametersFile, Key: ke.Key, Err: errors.New("not found")}
			}
			return nil, &ConfigError{File: ParametersFile, Err: err}
		}
		writes = append(writes, pendingWrite{rel: ParametersFile, data: out, detail: strings.Join(sortedKeys(dbValues), ", ")})

		envValues := map[string]string{}
		for k, v := range dbValues {
			envValues[envOverrides[k]] = v
		}
		envFiles, err := rootEnvFiles(shop.Root)
		if err != nil {
			return nil, err
		}
		for _, f := range envFiles {
			src, err := os.ReadFile(shop.path(f))
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			out, changed, err := setDotenv(src, envValues)
			if err != nil {
				return nil, &ConfigError{File: f, Err: err}
			}
			if len(changed) > 0 {
				writes = append(writes, pendingWrite{rel: f, data: out, detail: strings.Join(changed, ", ")})
			}
		}
	}
	if shop.Series == Series16 || shop.LegacySettings {
		src, err := os.ReadFile(shop.path(SettingsFile))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", SettingsFile, err)
		}
		server := t.DBHost
		if t.DBPort != 0 {
			server += ":" + strconv.Itoa(t.DBPort)
		}
		defs := map[string]string{"_DB_SERVER_": server, "_DB_NAME_": t.DBName, "_DB_USER_": t.DBUser, "_DB_PASSWD_": t.DBPassword}
		out, err := setDefines(src, defs)
		if err != nil {
			var ke *KeyError
			if errors.As(err, &ke) {
				return nil, &ConfigError{File: SettingsFile, Key: ke.Key, Err: errors.New("not defined")}
			}
			return nil, &ConfigError{File: SettingsFile, Err: err}
		}
		writes = append(writes, pendingWrite{rel: SettingsFile, data: out, detail: strings.Join(sortedKeys(defs), ", ")})
	}

	// .htaccess: the production host names become the staging one.
	if src, err := os.ReadFile(shop.path(HtaccessFile)); err == nil {
		from := append(append([]string{}, shop.Domains...), htaccessDomains(string(src))...)
		from = append(from, t.ExtraDomains...)
		out, n := replaceHosts(string(src), dedupe(from), t.Domain)
		if t.PhysicalURI != "" {
			var m int
			out, m = replaceRewriteBase(out, t.PhysicalURI)
			n += m
		}
		if len(from) == 0 {
			rep.warn("%s: no production domain found (no \"#Domain:\" line); check its rewrite rules by hand", HtaccessFile)
		}
		if n > 0 {
			writes = append(writes, pendingWrite{rel: HtaccessFile, data: []byte(out), detail: fmt.Sprintf("%d host names replaced by %s", n, t.Domain)})
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", HtaccessFile, err)
	}
	if !t.KeepRobots {
		writes = append(writes, pendingWrite{rel: RobotsFile, data: []byte(stagingRobots), detail: "Disallow: / (staging must not be indexed)"})
	}

	// Refuse before the first write what writeFileAtomic would refuse
	// halfway: a file that is a symbolic link may point outside the restore.
	for _, w := range writes {
		if fi, err := os.Lstat(shop.path(w.rel)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, &ConfigError{File: w.rel, Err: errors.New("is a symbolic link (it may point outside the restored tree); replace it with a regular file")}
		}
	}
	for _, w := range writes {
		if err := writeFileAtomic(shop.path(w.rel), w.data); err != nil {
			return rep, fmt.Errorf("write %s: %w", w.rel, err)
		}
		rep.Files = append(rep.Files, w.rel)
		rep.add(w.rel, w.detail, 1)
	}
	if err := emptyCaches(shop, rep); err != nil {
		return rep, err
	}
	if shop.Series != Series16 && shop.Series != Series17 {
		rep.warn("PrestaShop %s also takes PS_DATABASE_* from the web server's environment (vhost SetEnv, PHP-FPM pool env); those live outside the web root: make sure the staging vhost does not set them to production values", shop.Series)
	}
	if len(shop.DB.Unknown) > 0 {
		rep.warn("the production shop computed %s at run time (getenv() or $VAR); the clone now has literal values", strings.Join(shop.DB.Unknown, ", "))
	}
	return rep, nil
}

const stagingRobots = "# staging copy made by shopvault: keep crawlers out\nUser-agent: *\nDisallow: /\n"

// rootEnvFiles lists the dotenv files in the shop root (.env, .env.local,
// .env.prod, ...). All of them are rewritten, not only those loaded with the
// default APP_ENV, because the web server may set another APP_ENV.
func rootEnvFiles(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	var out []string
	for _, e := range entries {
		if (e.Name() == ".env" || strings.HasPrefix(e.Name(), ".env.")) && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		if s != "" && !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// replaceHosts replaces whole host names in text, both literally and in the
// regular-expression form Apache rules use ("shop\.example\.com"). A name is
// only replaced where it is not part of a longer name, so replacing
// "shop.example.com" leaves "static.shop.example.com" alone.
func replaceHosts(text string, from []string, to string) (string, int) {
	sort.Slice(from, func(i, j int) bool { return len(from[i]) > len(from[j]) })
	total := 0
	for _, f := range from {
		if f == to {
			continue
		}
		var n int
		text, n = replaceHost(text, f, to)
		total += n
		esc := strings.ReplaceAll(f, ".", `\.`)
		text, n = replaceHost(text, esc, strings.ReplaceAll(to, ".", `\.`))
		total += n
	}
	return text, total
}

func isHostByte(c byte) bool {
	return c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func replaceHost(text, from, to string) (string, int) {
	var b strings.Builder
	n := 0
	i := 0
	for {
		k := strings.Index(text[i:], from)
		if k < 0 {
			break
		}
		k += i
		end := k + len(from)
		ok := true
		if k > 0 && (isHostByte(text[k-1]) || text[k-1] == '.') {
			ok = false
		}
		if end < len(text) && isHostByte(text[end]) {
			ok = false
		}
		if end+1 < len(text) && text[end] == '.' && isHostByte(text[end+1]) {
			ok = false
		}
		if end+2 < len(text) && text[end] == '\\' && text[end+1] == '.' && isHostByte(text[end+2]) {
			ok = false
		}
		b.WriteString(text[i:k])
		if ok {
			b.WriteString(to)
			n++
		} else {
			b.WriteString(from)
		}
		i = end
	}
	b.WriteString(text[i:])
	return b.String(), n
}

var rewriteBaseRE = regexp.MustCompile(`\[E=REWRITEBASE:[^\]\s]*\]`)

func replaceRewriteBase(text, uri string) (string, int) {
	n := 0
	out := rewriteBaseRE.ReplaceAllStringFunc(text, func(m string) string {
		repl := "[E=REWRITEBASE:" + uri + "]"
		if m != repl {
			n++
		}
		return repl
	})
	return out, n
}

// cacheDirs returns the cache directories of a shop, relative to its root,
// and whether everything inside goes (true) or only files other than
// index.php and .htaccess (false: those guard the directory from the web).
func cacheDirs(shop *Shop) map[string]bool {
	dirs := map[string]bool{"cache": false}
	if shop.Series != Series16 {
		dirs["var/cache"] = true
	}
	themes, _ := os.ReadDir(shop.path("themes"))
	for _, th := range themes {
		if th.IsDir() {
			dirs["themes/"+th.Name()+"/assets/cache"] = false
			dirs["themes/"+th.Name()+"/cache"] = false
		}
	}
	return dirs
}

// emptyCaches removes cached copies of settings and generated files. It
// never follows a symbolic link: a cache directory that is a link is
// reported and left alone, since it may point outside the restore.
func emptyCaches(shop *Shop, rep *Report) error {
	dirs := cacheDirs(shop)
	for _, rel := range sortedKeys(dirs) {
		all := dirs[rel]
		p := shop.path(rel)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("empty %s: %w", rel, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			rep.warn("%s is a symbolic link; not emptied (empty it by hand)", rel)
			continue
		}
		if !fi.IsDir() {
			continue
		}
		var n int64
		if all {
			entries, err := os.ReadDir(p)
			if err != nil {
				return fmt.Errorf("empty %s: %w", rel, err)
			}
			for _, e := range entries {
				if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
					return fmt.Errorf("empty %s: %w", rel, err)
				}
				n++
			}
		} else {
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() || d.Name() == "index.php" || d.Name() == ".htaccess" {
					return nil
				}
				n++
				return os.Remove(path)
			})
			if err != nil {
				return fmt.Errorf("empty %s: %w", rel, err)
			}
		}
		if n > 0 {
			rep.add(rel, "emptied", n)
		}
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, the old file's mode and owner, fsync, rename, fsync of the
// directory. A new file gets mode 0644.
func writeFileAtomic(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			return errors.New("is a symbolic link; refusing to replace it")
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".shopvault-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := f.Chown(uid, gid); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
