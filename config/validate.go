package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
)

// MaxConnections is the most SSH connections shopvault opens to one
// Storage Box (which allows about 10 per account).
const MaxConnections = 8

// validator collects errors with their lines.
type validator struct {
	file  string
	lines map[string]int
	env   map[string]string // key -> environment variable it came from
	errs  Errors
}

func (v *validator) addf(key, format string, args ...any) {
	e := &Error{File: v.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if name, ok := v.env[key]; ok {
		e.Env = name
	} else {
		e.Line = v.line(key)
	}
	v.errs = append(v.errs, e)
}

// line finds the line of key, or of the nearest enclosing key or table.
func (v *validator) line(key string) int {
	for key != "" {
		if n, ok := v.lines[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

func (v *validator) sorted() Errors {
	sort.SliceStable(v.errs, func(i, j int) bool {
		if v.errs[i].Line != v.errs[j].Line {
			return v.errs[i].Line < v.errs[j].Line
		}
		return v.errs[i].Key < v.errs[j].Key
	})
	return v.errs
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return v.sorted()
}

func (v *validator) config(c *Config) {
	v.repository("repository", c.Repository)
	v.absPath("host-key", c.HostKey, true)
	v.absPath("restore-key", c.RestoreKey, false)
	for i, r := range c.Recipients.Host {
		v.recipient(fmt.Sprintf("recipients.host[%d]", i), r)
	}
	for i, r := range c.Recipients.Restore {
		v.recipient(fmt.Sprintf("recipients.restore[%d]", i), r)
	}
	v.ssh(c.SSH)
	if len(c.Sources) == 0 && len(c.Databases) == 0 {
		v.addf("sources", "nothing to back up: add a [[sources]] or a [[databases]] table")
	}
	for i, s := range c.Sources {
		v.source(fmt.Sprintf("sources[%d]", i), s)
	}
	for i, d := range c.Databases {
		v.database(fmt.Sprintf("databases[%d]", i), d)
	}
	for _, name := range sortedTargetNames(c.Targets) {
		v.target("targets."+name, name, c.Targets[name])
	}
	v.retention(c.Retention)
	v.schedule(c.Schedule, c.Targets)
	for i, h := range c.Hooks.Before {
		v.hook(fmt.Sprintf("hooks.before[%d]", i), h)
	}
	for i, h := range c.Hooks.After {
		v.hook(fmt.Sprintf("hooks.after[%d]", i), h)
	}
	v.notifications(c.Notifications)
	v.absPath("cache-dir", c.CacheDir, true)
	v.absPath("state-dir", c.StateDir, true)
}

func sortedStringKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedTargetNames(m map[string]Target) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// absPath checks that p is a clean absolute path (or empty when optional).
func (v *validator) absPath(key, p string, required bool) {
	switch {
	case p == "":
		if required {
			v.addf(key, "is required: give an absolute path")
		}
	case !path.IsAbs(p):
		v.addf(key, "%q is not an absolute path (it must start with /)", p)
	case hasDotDot(p):
		v.addf(key, "%q contains \"..\"; write the path without it", p)
	case strings.ContainsAny(p, "\x00\n\r"):
		v.addf(key, "%q contains a control character", p)
	}
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func (v *validator) repository(key, r string) {
	if r == "" {
		v.addf(key, "is required: an absolute path or sftp://user@host[:port]/path (or set %s)", EnvRepository)
		return
	}
	if strings.HasPrefix(r, "/") {
		v.absPath(key, r, true)
		return
	}
	u, err := url.Parse(r)
	if err != nil || u.Scheme != "sftp" {
		v.addf(key, "%q is neither an absolute path nor sftp://user@host[:port]/path", r)
		return
	}
	if u.User == nil || u.User.Username() == "" {
		v.addf(key, "%q names no user: write sftp://user@host/path", r)
	}
	if _, ok := u.User.Password(); ok {
		v.addf(key, "%q contains a password: use an SSH key (ssh.key-file) instead", r)
	}
	if u.Hostname() == "" {
		v.addf(key, "%q names no host", r)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.addf(key, "%q has an invalid port %q", r, p)
		}
	}
	if u.Path == "" || u.Path == "/" {
		v.addf(key, "%q names no directory: write sftp://user@host/shopvault", r)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		v.addf(key, "%q must not have a query or fragment", r)
	}
}

func (v *validator) recipient(key, r string) {
	if !strings.HasPrefix(r, "age1") {
		v.addf(key, "%q is not an age public key (they start with age1)", r)
		return
	}
	if _, err := age.ParseRecipients(strings.NewReader(r)); err != nil {
		v.addf(key, "%q is not a valid age public key: %v", r, err)
	}
}

var fingerprintRE = regexp.MustCompile(`^SHA256:[A-Za-z0-9+/]{43}=?$`)

func (v *validator) ssh(s SSH) {
	v.absPath("ssh.known-hosts", s.KnownHosts, true)
	v.absPath("ssh.key-file", s.KeyFile, false)
	v.absPath("ssh.passphrase-file", s.PassphraseFile, false)
	if s.PassphraseFile != "" && s.KeyFile == "" {
		v.addf("ssh.passphrase-file", "is set but ssh.key-file is not")
	}
	if s.AcceptHostKey != "" && !fingerprintRE.MatchString(s.AcceptHostKey) {
		v.addf("ssh.accept-host-key", "%q is not a SHA256 fingerprint (SHA256: followed by 43 base64 characters, as ssh-keygen -lf prints)", s.AcceptHostKey)
	}
	switch {
	case s.Connections < 1:
		v.addf("ssh.connections", "must be at least 1, not %d", s.Connections)
	case s.Connections > MaxConnections:
		v.addf("ssh.connections", "%d is more than %d (a Storage Box allows about 10 connections per account)", s.Connections, MaxConnections)
	}
	v.positive("ssh.connect-timeout", s.ConnectTimeout)
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.addf(key, "must be longer than 0")
	}
}

func (v *validator) source(key string, s Source) {
	if len(s.Paths) == 0 {
		v.addf(key+".paths", "is required: list the absolute paths to back up")
	}
	for i, p := range s.Paths {
		v.absPath(fmt.Sprintf("%s.paths[%d]", key, i), p, true)
	}
	for i, x := range s.Excludes {
		k := fmt.Sprintf("%s.excludes[%d]", key, i)
		if strings.TrimSpace(x) == "" {
			v.addf(k, "is empty")
			continue
		}
		if _, err := path.Match(strings.ReplaceAll(x, "**", "*"), ""); err != nil {
			v.addf(k, "%q is not a valid pattern: %v", x, err)
		}
	}
}

// DBAddress is a parsed database address.
type DBAddress struct {
	Net    string // "unix" or "tcp"
	Addr   string // socket path or host:port
	DBName string // may be empty
}

func (a DBAddress) String() string { return a.Net + "(" + a.Addr + ")/" + a.DBName }

var dbNameRE = regexp.MustCompile(`^[^/\\.\x00\s]{1,64}$`)

// ParseDBAddress parses "unix(/run/mysqld/mysqld.sock)/prestashop" or
// "tcp(127.0.0.1:3306)/prestashop"; the database name is optional.
func ParseDBAddress(s string) (DBAddress, error) {
	open := strings.IndexByte(s, '(')
	closing := strings.LastIndex(s, ")/")
	if open < 0 || closing < open {
		if strings.HasSuffix(s, ")") && open > 0 {
			closing = len(s) - 1
		} else {
			return DBAddress{}, fmt.Errorf("%q is not an address: write unix(/run/mysqld/mysqld.sock)/dbname or tcp(host:3306)/dbname", s)
		}
	}
	a := DBAddress{Net: s[:open], Addr: s[open+1 : closing]}
	if closing+2 <= len(s) {
		a.DBName = s[closing+2:]
	}
	switch a.Net {
	case "unix":
		if !path.IsAbs(a.Addr) {
			return DBAddress{}, fmt.Errorf("%q: the socket %q is not an absolute path", s, a.Addr)
		}
	case "tcp":
		host, port, err := net.SplitHostPort(a.Addr)
		if err != nil || host == "" {
			return DBAddress{}, fmt.Errorf("%q: %q is not host:port", s, a.Addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return DBAddress{}, fmt.Errorf("%q: invalid port %q", s, port)
		}
	default:
		return DBAddress{}, fmt.Errorf("%q: unknown protocol %q (use unix or tcp)", s, a.Net)
	}
	if a.DBName != "" && !dbNameRE.MatchString(a.DBName) {
		return DBAddress{}, fmt.Errorf("%q: %q is not a database name", s, a.DBName)
	}
	return a, nil
}

func (v *validator) database(key string, d Database) {
	if d.Address == "" {
		v.addf(key+".address", "is required, e.g. \"unix(/run/mysqld/mysqld.sock)/prestashop\"")
	} else if _, err := ParseDBAddress(d.Address); err != nil {
		v.addf(key+".address", "%v", err)
	}
	v.absPath(key+".credentials-file", d.CredentialsFile, false)
	if d.Plesk && d.CredentialsFile != "" {
		v.addf(key+".plesk", "plesk = true and credentials-file are exclusive: keep one")
	}
	for i, n := range d.Databases {
		if !dbNameRE.MatchString(n) {
			v.addf(fmt.Sprintf("%s.databases[%d]", key, i), "%q is not a database name", n)
		}
	}
	if d.Address != "" && len(d.DatabaseNames()) == 0 {
		if _, err := ParseDBAddress(d.Address); err == nil {
			v.addf(key+".databases", "no database to dump: list them here or end the address with /dbname")
		}
	}
	if d.Threads < 1 || d.Threads > 32 {
		v.addf(key+".threads", "must be between 1 and 32, not %d", d.Threads)
	}
	v.positive(key+".lock-timeout", d.LockTimeout)
}

var (
	targetNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	domainRE     = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(:[0-9]{1,5})?$`)
	settingRE    = regexp.MustCompile(`^[A-Za-z0-9_]{1,254}$`)
)

func (v *validator) target(key, name string, t Target) {
	switch {
	case name == "full" || name == "dir":
		v.addf(key, "the target name %q is reserved for the built-in target; choose another name", name)
	case !targetNameRE.MatchString(name):
		v.addf(key, "%q is not a valid target name (lower case letters, digits, - and _)", name)
	}
	v.absPath(key+".root", t.Root, true)
	if t.Root == "/" {
		v.addf(key+".root", "must not be / (a staging restore needs its own directory)")
	}
	if t.DBAddress != "" {
		if _, err := ParseDBAddress(t.DBAddress); err != nil {
			v.addf(key+".db-address", "%v", err)
		}
		if t.DBName == "" {
			v.addf(key+".db-name", "is required when db-address is set: the target's own database")
		}
	}
	if t.DBName != "" && !dbNameRE.MatchString(t.DBName) {
		v.addf(key+".db-name", "%q is not a database name", t.DBName)
	}
	if t.DBName != "" && t.DBAddress == "" {
		v.addf(key+".db-address", "is required when db-name is set")
	}
	v.absPath(key+".db-credentials-file", t.DBCredentialsFile, false)
	if t.Domain != "" && !domainRE.MatchString(t.Domain) {
		v.addf(key+".domain", "%q is not a host name (write staging.example.com, without https:// or a path)", t.Domain)
	}
	if t.DomainSSL != "" && !domainRE.MatchString(t.DomainSSL) {
		v.addf(key+".domain-ssl", "%q is not a host name", t.DomainSSL)
	}
	for _, id := range sortedStringKeys(t.ShopDomains) {
		k := key + ".shop-domains." + id
		if n, err := strconv.Atoi(id); err != nil || n < 1 {
			v.addf(k, "%q is not a shop id (a positive number)", id)
		}
		if d := t.ShopDomains[id]; !domainRE.MatchString(d) {
			v.addf(k, "%q is not a host name", d)
		}
	}
	for i, d := range t.ExtraDomains {
		if !domainRE.MatchString(d) {
			v.addf(fmt.Sprintf("%s.extra-domains[%d]", key, i), "%q is not a host name", d)
		}
	}
	if t.PhysicalURI != "" && (!strings.HasPrefix(t.PhysicalURI, "/") || !strings.HasSuffix(t.PhysicalURI, "/") || strings.ContainsAny(t.PhysicalURI, " \t'\"\\?#")) {
		v.addf(key+".physical-uri", "%q must start and end with / (\"/\" for a shop at the root)", t.PhysicalURI)
	}
	for i, ip := range t.MaintenanceIPs {
		if net.ParseIP(ip) == nil {
			v.addf(fmt.Sprintf("%s.maintenance-ips[%d]", key, i), "%q is not an IP address", ip)
		}
	}
	if len(t.MaintenanceIPs) > 0 && !t.Maintenance {
		v.addf(key+".maintenance-ips", "is set but maintenance is false")
	}
	if t.ProbeURL != "" {
		v.httpURL(key+".probe-url", t.ProbeURL)
	}
	for i, s := range t.Settings {
		k := fmt.Sprintf("%s.settings[%d]", key, i)
		if !settingRE.MatchString(s.Name) {
			v.addf(k+".name", "%q is not a ps_configuration name (letters, digits and _)", s.Name)
		}
	}
}

func (v *validator) httpURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.addf(key, "%q is not an http:// or https:// URL", s)
	}
}

func (v *validator) retention(r Retention) {
	for _, f := range []struct {
		key string
		n   int
	}{
		{"keep-last", r.KeepLast}, {"keep-hourly", r.KeepHourly}, {"keep-daily", r.KeepDaily},
		{"keep-weekly", r.KeepWeekly}, {"keep-monthly", r.KeepMonthly}, {"keep-yearly", r.KeepYearly},
		{"keep-min-verified", r.KeepMinVerified},
	} {
		if f.n < 0 {
			v.addf("retention."+f.key, "must not be negative (%d); 0 means unused", f.n)
		}
	}
	if r.KeepLast <= 0 && r.KeepHourly <= 0 && r.KeepDaily <= 0 && r.KeepWeekly <= 0 &&
		r.KeepMonthly <= 0 && r.KeepYearly <= 0 && r.KeepWithin <= 0 && len(r.KeepTags) == 0 {
		v.addf("retention", "keeps nothing: set at least one keep-* value, or remove [retention] to use the defaults")
	}
	for i, t := range r.KeepTags {
		if strings.ContainsAny(t, " \t\n") {
			v.addf(fmt.Sprintf("retention.keep-tags[%d]", i), "%q contains white space", t)
		}
	}
}

var calendarRE = regexp.MustCompile(`^[A-Za-z0-9*,./:~ +-]+$`)

func (v *validator) schedule(s Schedule, targets map[string]Target) {
	for _, c := range []struct {
		key, val string
		offOK    bool
	}{
		{"schedule.backup", s.Backup, false}, {"schedule.check", s.Check, true}, {"schedule.drill", s.Drill, true},
	} {
		switch {
		case c.val == Off && c.offOK:
		case c.val == Off:
			v.addf(c.key, "cannot be off: the nightly backup is the point")
		case strings.TrimSpace(c.val) == "" || !calendarRE.MatchString(c.val):
			v.addf(c.key, "%q is not a systemd calendar expression (e.g. \"*-*-* 03:00\"; see systemd.time(7))", c.val)
		}
	}
	if s.RandomizedDelay < 0 || s.RandomizedDelay > 12*time.Hour {
		v.addf("schedule.randomized-delay", "must be between 0 and 12h")
	}
	if s.DrillTarget != "" {
		if _, ok := targets[s.DrillTarget]; !ok {
			known := sortedTargetNames(targets)
			if len(known) == 0 {
				v.addf("schedule.drill-target", "names the target %q but no [targets.%s] table exists", s.DrillTarget, s.DrillTarget)
			} else {
				v.addf("schedule.drill-target", "unknown target %q (defined: %s)", s.DrillTarget, strings.Join(known, ", "))
			}
		}
	}
}

func (v *validator) hook(key string, h Hook) {
	if len(h.Command) == 0 || h.Command[0] == "" {
		v.addf(key+".command", "is required: the program and its arguments, e.g. [\"/usr/local/bin/pre-backup\", \"--quiet\"]")
	}
	v.positive(key+".timeout", h.Timeout)
}

func (v *validator) notifications(n Notifications) {
	for _, u := range []struct{ key, val string }{
		{"notifications.ping-start", n.PingStart}, {"notifications.ping-success", n.PingSuccess}, {"notifications.ping-failure", n.PingFailure},
	} {
		if u.val != "" {
			v.httpURL(u.key, u.val)
		}
	}
	v.positive("notifications.ping-timeout", n.PingTimeout)
	if n.PrometheusTextfile != "" {
		v.absPath("notifications.prometheus-textfile", n.PrometheusTextfile, true)
		if !strings.HasSuffix(n.PrometheusTextfile, ".prom") {
			v.addf("notifications.prometheus-textfile", "%q must end in .prom (node_exporter reads only *.prom files)", n.PrometheusTextfile)
		}
	}
}
