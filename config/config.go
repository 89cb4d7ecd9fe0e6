// Package config reads and validates shopvault's configuration file,
// /etc/shopvault/shopvault.toml by default.
//
// The file is TOML. Keys are lower case with dashes (keep-daily,
// one-file-system). Unknown keys are errors. Every error names the file, the
// line and the key, for example
//
//	shopvault.toml:12: sources[1].paths[0]: "var/www" is not an absolute path
//
// Durations are strings in Go's syntax with two more units, "d" (24h) and
// "w" (7d): "30s", "10m", "36h", "7d". Byte rates are strings such as
// "20MiB" or "500KB" (per second).
//
// # Environment
//
// LoadEnv and ParseEnv take a getenv function (os.Getenv in the CLI). These
// variables, when set and not empty, override the file:
//
//	SHOPVAULT_REPO         repository
//	SHOPVAULT_HOST_KEY     host-key
//	SHOPVAULT_RESTORE_KEY  restore-key
//
// The overriding values are validated like values from the file; their
// errors name the variable instead of a line. The path of the file itself
// is chosen by the caller (--config, SHOPVAULT_CONFIG).
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultPath is where the configuration file lives unless --config or
// SHOPVAULT_CONFIG say otherwise.
const DefaultPath = "/etc/shopvault/shopvault.toml"

// Environment variables that override keys of the file.
const (
	EnvRepository = "SHOPVAULT_REPO"
	EnvHostKey    = "SHOPVAULT_HOST_KEY"
	EnvRestoreKey = "SHOPVAULT_RESTORE_KEY"
)

// Config is the whole configuration file. The zero value is not useful: use
// Default, Load or Parse.
type Config struct {
	// Repository is the repository URL: an absolute path, or
	// sftp://user@host[:port]/path. Required.
	Repository string `toml:"repository"`
	// HostKey is the age identity file of this server (it writes backups
	// but cannot read them). Default /etc/shopvault/host.key.
	HostKey string `toml:"host-key"`
	// RestoreKey is the age identity file that can read everything. It
	// normally does not live on the server; empty means not configured.
	RestoreKey string `toml:"restore-key"`
	// Recipients pins the public keys backups are written to; a repository
	// that names other recipients is refused.
	Recipients Recipients `toml:"recipients"`
	SSH        SSH        `toml:"ssh"`
	Sources    []Source   `toml:"sources"`
	Databases  []Database `toml:"databases"`
	// Targets are the named restore targets ("staging"); the names "full"
	// and "dir" are reserved for the built-in targets.
	Targets       map[string]Target `toml:"targets"`
	Retention     Retention         `toml:"retention"`
	Schedule      Schedule          `toml:"schedule"`
	Hooks         Hooks             `toml:"hooks"`
	Notifications Notifications     `toml:"notifications"`
	// CacheDir holds the local change-detection cache; default
	// /var/cache/shopvault.
	CacheDir string `toml:"cache-dir"`
	// StateDir holds the state of the last runs (for status); default
	// /var/lib/shopvault.
	StateDir string `toml:"state-dir"`
}

// Recipients are age public keys ("age1...").
type Recipients struct {
	Host    []string `toml:"host"`
	Restore []string `toml:"restore"`
}

// SSH configures the sftp backend.
type SSH struct {
	// KnownHosts is the known_hosts file checked strictly; default
	// /etc/shopvault/known_hosts.
	KnownHosts string `toml:"known-hosts"`
	// KeyFile is the private key; empty means the SSH agent.
	KeyFile string `toml:"key-file"`
	// PassphraseFile holds the key's passphrase, if it has one.
	PassphraseFile string `toml:"passphrase-file"`
	// AcceptHostKey is a host key fingerprint ("SHA256:...") to add to
	// known_hosts on first contact.
	AcceptHostKey string `toml:"accept-host-key"`
	// Connections is the size of the connection pool: default 4, at most 8
	// (a Storage Box allows about 10 per account).
	Connections int `toml:"connections"`
	// ConnectTimeout bounds dialing and the SSH handshake; default 30s.
	ConnectTimeout time.Duration `toml:"connect-timeout"`
	// LimitUpload and LimitDownload are bandwidth limits in bytes per
	// second; 0 means unlimited.
	LimitUpload   Rate `toml:"limit-upload"`
	LimitDownload Rate `toml:"limit-download"`
}

// Rate is a bandwidth in bytes per second, written "20MiB" or "500KB".
type Rate int64

// Source is a set of file trees to back up.
type Source struct {
	// Paths are absolute paths of files or directories.
	Paths []string `toml:"paths"`
	// Excludes are patterns (filepath.Match syntax, "**" for any depth);
	// a pattern without "/" matches a name anywhere, one with "/" matches
	// relative to each path.
	Excludes []string `toml:"excludes"`
	// ExcludeCaches skips directories that hold a CACHEDIR.TAG.
	ExcludeCaches bool `toml:"exclude-caches"`
	// OneFileSystem does not cross mount points.
	OneFileSystem bool `toml:"one-file-system"`
}

// Database is a MariaDB server and the databases to dump from it.
type Database struct {
	// Address is "unix(/run/mysqld/mysqld.sock)/prestashop" or
	// "tcp(127.0.0.1:3306)/prestashop"; the database name is optional when
	// Databases lists them.
	Address string `toml:"address"`
	// CredentialsFile is a MariaDB option file with user and password in
	// its [client] group.
	CredentialsFile string `toml:"credentials-file"`
	// Plesk reads the admin credentials the way Plesk's own tools do
	// (/etc/psa/.psa.shadow). Exclusive with CredentialsFile. With neither,
	// unix socket authentication as the running user is used.
	Plesk bool `toml:"plesk"`
	// Databases lists the databases to dump; default: the one in Address.
	Databases []string `toml:"databases"`
	// Threads is the number of parallel dump connections; default 4.
	Threads int `toml:"threads"`
	// LockTimeout bounds every lock wait of the dump; default 10s.
	LockTimeout time.Duration `toml:"lock-timeout"`
	// LockNontransactional locks MyISAM/Aria tables for a consistent dump.
	LockNontransactional bool `toml:"lock-nontransactional"`
}

// DatabaseNames returns the databases to dump: Databases, or the one named
// in Address.
func (d Database) DatabaseNames() []string {
	if len(d.Databases) > 0 {
		return d.Databases
	}
	if a, err := ParseDBAddress(d.Address); err == nil && a.DBName != "" {
		return []string{a.DBName}
	}
	return nil
}

// Target is a named restore target such as staging.
type Target struct {
	// Root is the directory the shop's files are restored into.
	Root string `toml:"root"`
	// DBAddress is the MariaDB server of the target (same syntax as
	// Database.Address; a database name in it is ignored, see DBName).
	DBAddress string `toml:"db-address"`
	// DBCredentialsFile is a MariaDB option file for DBAddress.
	DBCredentialsFile string `toml:"db-credentials-file"`
	// DBName is the target's own database.
	DBName string `toml:"db-name"`
	// Domain replaces the shop's domain (ps_shop_url, PS_SHOP_DOMAIN...).
	Domain string `toml:"domain"`
	// DomainSSL is the HTTPS domain; empty means Domain.
	DomainSSL string `toml:"domain-ssl"`
	// ShopDomains gives a domain per shop id ("2" = "de.staging.example.com")
	// for multistore clones; other shops get Domain.
	ShopDomains map[string]string `toml:"shop-domains"`
	// ExtraDomains are more production host names to replace in .htaccess.
	ExtraDomains []string `toml:"extra-domains"`
	// PhysicalURI is the shop's base path ("/", "/shop/"); empty keeps the
	// shop's own.
	PhysicalURI string `toml:"physical-uri"`
	// Maintenance turns maintenance mode on; MaintenanceIPs may still see
	// the shop.
	Maintenance    bool     `toml:"maintenance"`
	MaintenanceIPs []string `toml:"maintenance-ips"`
	// DisableSSL turns PrestaShop's SSL settings off, for a clone without
	// TLS. DisableWebservice turns the webservice and its keys off.
	DisableSSL        bool `toml:"disable-ssl"`
	DisableWebservice bool `toml:"disable-webservice"`
	// ClearSessions deletes production's customer and employee sessions.
	ClearSessions bool `toml:"clear-sessions"`
	// KeepRobots keeps robots.txt; by default the clone gets "Disallow: /".
	KeepRobots bool `toml:"keep-robots"`
	// ProbeURL is fetched after the restore; it must answer 200.
	ProbeURL string `toml:"probe-url"`
	// Settings are ps_configuration values set after the restore, to
	// switch modules that talk to the outside world off or to sandbox.
	Settings []Setting `toml:"settings"`
}

// Setting is one ps_configuration name and the value to give it.
type Setting struct {
	Name  string `toml:"name"`
	Value string `toml:"value"`
}

// Retention is the forget policy. When the [retention] table is absent the
// defaults of DefaultRetention apply; when it is present only what it says
// applies.
type Retention struct {
	KeepLast    int           `toml:"keep-last"`
	KeepHourly  int           `toml:"keep-hourly"`
	KeepDaily   int           `toml:"keep-daily"`
	KeepWeekly  int           `toml:"keep-weekly"`
	KeepMonthly int           `toml:"keep-monthly"`
	KeepYearly  int           `toml:"keep-yearly"`
	KeepWithin  time.Duration `toml:"keep-within"`
	// KeepTags keeps every snapshot with one of these tags ("a,b": both).
	KeepTags []string `toml:"keep-tags"`
	// KeepMinVerified keeps the N newest snapshots a drill has verified.
	KeepMinVerified int `toml:"keep-min-verified"`
}

// DefaultRetention is the policy used when the file has no [retention].
func DefaultRetention() Retention {
	return Retention{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepMinVerified: 1}
}

// Schedule configures the systemd timers. Calendar values use systemd's
// OnCalendar syntax; "off" disables the check or drill timer.
type Schedule struct {
	// Backup is when `shopvault run` starts; default "*-*-* 03:00".
	Backup string `toml:"backup"`
	// RandomizedDelay spreads the start; default 15m.
	RandomizedDelay time.Duration `toml:"randomized-delay"`
	// Check is when `shopvault check` runs; default weekly "Sun *-*-* 05:00".
	Check string `toml:"check"`
	// Drill is when `shopvault drill` runs; default monthly
	// "*-*-01 06:00:00".
	Drill string `toml:"drill"`
	// DrillTarget is a target name for the drill; empty means a scratch
	// directory and a throwaway database.
	DrillTarget string `toml:"drill-target"`
}

// Off is the Schedule value that disables a timer.
const Off = "off"

// Hooks are commands run around `shopvault run`.
type Hooks struct {
	Before []Hook `toml:"before"`
	After  []Hook `toml:"after"`
}

// Hook is one command, run without a shell.
type Hook struct {
	// Command is the program and its arguments.
	Command []string `toml:"command"`
	// Timeout kills the command; default 5m.
	Timeout time.Duration `toml:"timeout"`
}

// Notifications configures monitoring outputs.
type Notifications struct {
	// PingStart, PingSuccess and PingFailure are URLs fetched
	// (healthchecks-style) when a run starts, succeeds or fails.
	PingStart   string `toml:"ping-start"`
	PingSuccess string `toml:"ping-success"`
	PingFailure string `toml:"ping-failure"`
	// PingTimeout bounds every ping; default 10s.
	PingTimeout time.Duration `toml:"ping-timeout"`
	// PrometheusTextfile is a *.prom file in node_exporter's textfile
	// collector directory; empty means none.
	PrometheusTextfile string `toml:"prometheus-textfile"`
}

// Default returns the configuration an empty file gives (without a
// repository, which is required).
func Default() *Config {
	return &Config{
		HostKey:       "/etc/shopvault/host.key",
		SSH:           defaultSSH(),
		Retention:     DefaultRetention(),
		Schedule:      Schedule{Backup: "*-*-* 03:00", RandomizedDelay: 15 * time.Minute, Check: "Sun *-*-* 05:00", Drill: "*-*-01 06:00:00"},
		Notifications: Notifications{PingTimeout: 10 * time.Second},
		CacheDir:      "/var/cache/shopvault",
		StateDir:      "/var/lib/shopvault",
	}
}

func defaultSSH() SSH {
	return SSH{KnownHosts: "/etc/shopvault/known_hosts", Connections: 4, ConnectTimeout: 30 * time.Second}
}

func defaultDatabase() Database {
	return Database{Threads: 4, LockTimeout: 10 * time.Second}
}

func defaultHook() Hook { return Hook{Timeout: 5 * time.Minute} }

func defaultTarget() Target { return Target{} }

// Load reads and validates the file at path. Environment variables are not
// consulted; see LoadEnv.
func Load(path string) (*Config, error) {
	return LoadEnv(path, nil)
}

// LoadEnv is Load with the environment overrides of the package comment;
// getenv is usually os.Getenv, nil means no environment.
func LoadEnv(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read config: %w (create one with `shopvault config example > %s`, or pass --config)", err, path)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseEnv(filepath.Base(path), data, getenv)
}

// Parse decodes and validates a configuration file; name is used in error
// messages. The error, if any, is an Errors listing every problem found.
func Parse(name string, data []byte) (*Config, error) {
	return ParseEnv(name, data, nil)
}

// ParseEnv is Parse with the environment overrides of the package comment.
func ParseEnv(name string, data []byte, getenv func(string) string) (*Config, error) {
	c, lines, errs := decodeFile(name, data)
	if c == nil {
		return nil, errs
	}
	env := applyEnv(c, getenv)
	// Values that failed to decode keep their defaults, so validation
	// adds only new problems.
	v := &validator{file: name, lines: lines, env: env, errs: errs}
	v.config(c)
	if err := v.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// applyEnv overrides c from the environment and returns which keys came
// from which variable.
func applyEnv(c *Config, getenv func(string) string) map[string]string {
	if getenv == nil {
		return nil
	}
	env := map[string]string{}
	for _, o := range []struct {
		name, key string
		dst       *string
	}{
		{EnvRepository, "repository", &c.Repository},
		{EnvHostKey, "host-key", &c.HostKey},
		{EnvRestoreKey, "restore-key", &c.RestoreKey},
	} {
		if v := getenv(o.name); v != "" {
			*o.dst = v
			env[o.key] = o.name
		}
	}
	return env
}
