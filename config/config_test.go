package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFullFile(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Repository: "sftp://u123456@u123456.your-storagebox.de:23/shopvault",
		HostKey:    "/etc/shopvault/host.key",
		RestoreKey: "/root/restore.key",
		CacheDir:   "/var/cache/sv",
		StateDir:   "/var/lib/sv",
		Recipients: Recipients{
			Host:    []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"},
			Restore: []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"},
		},
		SSH: SSH{
			KnownHosts: "/etc/shopvault/known_hosts", KeyFile: "/etc/shopvault/id_ed25519",
			PassphraseFile: "/etc/shopvault/passphrase", AcceptHostKey: "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
			Connections: 6, ConnectTimeout: time.Minute, LimitUpload: 20 << 20, LimitDownload: 1e9,
		},
		Sources: []Source{
			{Paths: []string{"/var/www/vhosts/shop.example.com/httpdocs"}, Excludes: []string{"var/cache", "*.log"}, ExcludeCaches: true, OneFileSystem: true},
			{Paths: []string{"/etc/nginx", "/etc/php", "/etc/mysql"}},
		},
		Databases: []Database{
			{Address: "unix(/run/mysqld/mysqld.sock)/prestashop", CredentialsFile: "/etc/shopvault/my.cnf",
				Databases: []string{"prestashop", "prestashop_blog"}, Threads: 2, LockTimeout: 5 * time.Second, LockNontransactional: true},
			{Address: "tcp(127.0.0.1:3307)/other", Plesk: true, Threads: 4, LockTimeout: 10 * time.Second},
		},
		Targets: map[string]Target{"staging": {
			Root: "/srv/staging", DBAddress: "tcp(127.0.0.1:3306)/", DBCredentialsFile: "/etc/shopvault/staging.cnf",
			DBName: "staging", Domain: "staging.example.com", DomainSSL: "secure-staging.example.com",
			ShopDomains: map[string]string{"2": "de.staging.example.com"}, ExtraDomains: []string{"www.example.com"},
			PhysicalURI: "/shop/", Maintenance: true, DisableSSL: true, DisableWebservice: true, ClearSessions: true, KeepRobots: true,
			MaintenanceIPs: []string{"203.0.113.10", "2001:db8::1"}, ProbeURL: "https://staging.example.com/shop/",
			Settings: []Setting{{"PAYPAL_SANDBOX", "1"}, {"PS_MAIL_METHOD", "3"}},
		}},
		Retention: Retention{KeepLast: 3, KeepHourly: 24, KeepDaily: 10, KeepWeekly: 5, KeepMonthly: 6, KeepYearly: 2,
			KeepWithin: 14 * 24 * time.Hour, KeepTags: []string{"keep", "release,manual"}, KeepMinVerified: 2},
		Schedule: Schedule{Backup: "*-*-* 02:30", RandomizedDelay: time.Hour, Check: "off", Drill: "Mon *-*-1..7 06:00", DrillTarget: "staging"},
		Hooks: Hooks{
			Before: []Hook{{Command: []string{"/usr/local/bin/flush", "--all"}, Timeout: 30 * time.Second}},
			After:  []Hook{{Command: []string{"/bin/true"}, Timeout: 5 * time.Minute}},
		},
		Notifications: Notifications{
			PingStart: "https://hc-ping.com/abc/start", PingSuccess: "https://hc-ping.com/abc", PingFailure: "https://hc-ping.com/abc/fail",
			PingTimeout: 3 * time.Second, PrometheusTextfile: "/var/lib/prometheus/node-exporter/shopvault.prom",
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if got := c.Databases[1].DatabaseNames(); !reflect.DeepEqual(got, []string{"other"}) {
		t.Errorf("DatabaseNames from address = %v", got)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("shopvault.toml", []byte("repository = \"/srv/repo\"\n[[sources]]\npaths = [\"/var/www\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Retention, DefaultRetention()) || c.Retention.KeepDaily != 7 {
		t.Errorf("retention = %+v, want the defaults", c.Retention)
	}
	if c.Schedule.Backup != "*-*-* 03:00" || c.SSH.Connections != 4 || c.HostKey != "/etc/shopvault/host.key" ||
		c.StateDir != "/var/lib/shopvault" || c.CacheDir != "/var/cache/shopvault" {
		t.Errorf("defaults not applied: %+v", c)
	}
	// A [retention] table replaces the defaults instead of merging.
	c, err = Parse("shopvault.toml", []byte("repository = \"/srv/repo\"\n[[sources]]\npaths = [\"/var/www\"]\n[retention]\nkeep-last = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Retention, Retention{KeepLast: 2}) {
		t.Errorf("retention = %+v, want only keep-last 2", c.Retention)
	}
}

// TestErrorFiles checks every file in testdata/errors: each "# want: LINE:
// KEY: TEXT" comment must match exactly one reported error, and no other
// error may be reported.
func TestErrorFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no error cases: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse("shopvault.toml", data)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v (%T), want Errors", err, err)
			}
			wants := wantLines(data)
			if len(wants) == 0 {
				t.Fatal("test file has no # want: lines")
			}
			used := map[int]bool{}
			for _, w := range wants {
				found := false
				for i, e := range errs {
					if !used[i] && w.matches(e) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("no error matches want %+v", w)
				}
			}
			for i, e := range errs {
				if !used[i] {
					t.Errorf("unexpected error: %v", e)
				}
				if !strings.HasPrefix(e.Error(), "shopvault.toml:") {
					t.Errorf("error %q does not start with the file name", e)
				}
			}
		})
	}
}

type want struct {
	line int
	key  string
	text string
}

func (w want) matches(e *Error) bool {
	if e.Line != w.line || !strings.Contains(e.Msg, w.text) {
		return false
	}
	if w.key != "" && e.Key != w.key {
		return false
	}
	prefix := "shopvault.toml:" + strconv.Itoa(w.line) + ": "
	if w.line == 0 {
		prefix = "shopvault.toml: "
	}
	if w.key != "" {
		prefix += w.key + ": "
	}
	return strings.HasPrefix(e.Error(), prefix)
}

func wantLines(data []byte) []want {
	var ws []want
	for _, l := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "# want: ")
		if !ok {
			continue
		}
		var w want
		if n, r, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				w.line, rest = line, r
			}
		}
		// Syntax errors carry no key of ours; then the text is all.
		if k, r, ok := strings.Cut(rest, ": "); ok && !strings.Contains(k, " ") {
			w.key, rest = k, r
		}
		w.text = rest
		ws = append(ws, w)
	}
	return ws
}

func TestEnvOverrides(t *testing.T) {
	src := []byte("repository = \"/srv/from-file\"\nrestore-key = \"/root/r.key\"\n[[sources]]\npaths = [\"/var/www\"]\n")
	env := map[string]string{EnvRepository: "sftp://u1@box.example.com:23/sv", EnvHostKey: "/run/keys/host.key"}
	c, err := ParseEnv("shopvault.toml", src, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Repository != env[EnvRepository] || c.HostKey != env[EnvHostKey] || c.RestoreKey != "/root/r.key" {
		t.Errorf("overrides not applied: repo %q host-key %q restore-key %q", c.Repository, c.HostKey, c.RestoreKey)
	}
	// The file alone must not see the environment.
	c, err = Parse("shopvault.toml", src)
	if err != nil || c.Repository != "/srv/from-file" {
		t.Errorf("Parse = %v, %v", c, err)
	}
	// A bad override is reported with the variable's name, not a line.
	env[EnvRestoreKey] = "relative.key"
	_, err = ParseEnv("shopvault.toml", src, func(k string) string { return env[k] })
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Env != EnvRestoreKey || errs[0].Line != 0 ||
		!strings.Contains(err.Error(), "restore-key (from SHOPVAULT_RESTORE_KEY)") {
		t.Errorf("bad override error = %v", err)
	}
	// The repository may come from the environment only.
	_, err = ParseEnv("shopvault.toml", []byte("[[sources]]\npaths = [\"/a\"]\n"), func(k string) string {
		if k == EnvRepository {
			return "/srv/repo"
		}
		return ""
	})
	if err != nil {
		t.Errorf("repository from the environment only: %v", err)
	}
}

func TestExampleParsesAndValidates(t *testing.T) {
	for _, p := range []PleskExample{{}, {Domain: "boutique.example.fr", Database: "ps_boutique", Repository: "/mnt/backup/shopvault"}} {
		var buf bytes.Buffer
		if err := WriteExample(&buf, p); err != nil {
			t.Fatal(err)
		}
		c, err := Parse("example.toml", buf.Bytes())
		if err != nil {
			t.Fatalf("example does not validate:\n%v", err)
		}
		domain := p.Domain
		if domain == "" {
			domain = "shop.example.com"
		}
		if got := c.Sources[0].Paths[0]; got != "/var/www/vhosts/"+domain+"/httpdocs" {
			t.Errorf("web root = %q", got)
		}
		var all []string
		for _, s := range c.Sources {
			all = append(all, s.Paths...)
		}
		for _, need := range []string{"/etc/nginx", "/etc/php", "/etc/mysql", "/etc/letsencrypt", "/usr/local/psa/var/modules/letsencrypt"} {
			if !contains(all, need) {
				t.Errorf("example does not back up %s", need)
			}
		}
		for _, x := range []string{"var/cache", "var/logs", "cache/smarty", "img/tmp"} {
			if !contains(c.Sources[0].Excludes, x) {
				t.Errorf("example does not exclude %s", x)
			}
		}
		if !c.Databases[0].Plesk || c.Targets["staging"].Root == "" {
			t.Errorf("example lacks plesk credentials or a staging target: %+v", c)
		}
	}
	if err := WriteExample(&bytes.Buffer{}, PleskExample{Domain: "evil\"\nrepository = \"x"}); err == nil {
		t.Error("a domain with quotes and a newline was accepted")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "config example") {
		t.Errorf("Load of a missing file = %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "10m": 10 * time.Minute, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "0": 0, "1.5h": 90 * time.Minute, "250ms": 250 * time.Millisecond,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1s", "10", "s", "3y", "1d-2h", "99999999999w"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"0": 0, "500KB": 500e3, "20MiB": 20 << 20, "1G": 1e9, "100": 100, "2MiB/s": 2 << 20} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1MB", "3TB"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) succeeded", in)
		}
	}
}

func TestParseDBAddress(t *testing.T) {
	for in, want := range map[string]DBAddress{
		"unix(/run/mysqld/mysqld.sock)/prestashop": {"unix", "/run/mysqld/mysqld.sock", "prestashop"},
		"tcp(127.0.0.1:3306)/":                     {"tcp", "127.0.0.1:3306", ""},
		"tcp([::1]:3306)/shop":                     {"tcp", "[::1]:3306", "shop"},
		"unix(/run/mysqld/mysqld.sock)":            {"unix", "/run/mysqld/mysqld.sock", ""},
	} {
		got, err := ParseDBAddress(in)
		if err != nil || got != want {
			t.Errorf("ParseDBAddress(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "localhost", "tcp(localhost)/x", "udp(1.2.3.4:1)/x", "unix(rel.sock)/x", "tcp(h:99999)/x", "tcp(h:1)/a/b"} {
		if a, err := ParseDBAddress(in); err == nil {
			t.Errorf("ParseDBAddress(%q) = %+v, want an error", in, a)
		}
	}
}

func TestKeyLines(t *testing.T) {
	src := `a = 1 # comment
"quoted.key" = 'x'
[t1]
b.c = """multi
line ] [ = "
"""
d = [
  1, # one
  { e = "}", f = [2, 3] },
]
[[arr]]
g = 1
[[arr]]
g = 2
[arr.sub]
h = '''x
'''
i = 3
`
	got := keyLines([]byte(src))
	for k, line := range map[string]int{
		"a": 1, "quoted.key": 2, "t1": 3, "t1.b": 4, "t1.b.c": 4, "t1.d": 7, "t1.d[0]": 8, "t1.d[1]": 9,
		"t1.d[1].e": 9, "t1.d[1].f[1]": 9, "arr[0]": 11, "arr[0].g": 12, "arr[1]": 13, "arr[1].g": 14,
		"arr[1].sub": 15, "arr[1].sub.h": 16, "arr[1].sub.i": 18,
	} {
		if got[k] != line {
			t.Errorf("line of %s = %d, want %d", k, got[k], line)
		}
	}
}
