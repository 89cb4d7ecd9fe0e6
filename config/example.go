package config

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// PleskExample fills in the commented starting file written by Example. Zero
// fields get placeholders that still validate.
type PleskExample struct {
	// Domain is the shop's domain: its web root is
	// /var/www/vhosts/<Domain>/httpdocs. Default "shop.example.com".
	Domain string
	// Database is the shop's MariaDB database. Default "prestashop".
	Database string
	// Repository is the repository URL. Default: a Storage Box placeholder.
	Repository string
}

var exampleWordRE = regexp.MustCompile(`^[A-Za-z0-9.:_@/+-]+$`)

func (p PleskExample) withDefaults() (PleskExample, error) {
	if p.Domain == "" {
		p.Domain = "shop.example.com"
	}
	if p.Database == "" {
		p.Database = "prestashop"
	}
	if p.Repository == "" {
		p.Repository = "sftp://u123456@u123456.your-storagebox.de:23/shopvault"
	}
	for _, f := range []struct{ name, v string }{{"domain", p.Domain}, {"database", p.Database}, {"repository", p.Repository}} {
		if !exampleWordRE.MatchString(f.v) {
			return p, fmt.Errorf("example %s %q: only letters, digits and . : _ @ / + - are allowed", f.name, f.v)
		}
	}
	return p, nil
}

// Example returns a commented starting configuration for a PrestaShop shop
// on a Plesk server. It panics never; invalid fields of p are replaced by
// their placeholders (use WriteExample to get an error instead).
func Example(p PleskExample) string {
	q, err := p.withDefaults()
	if err != nil {
		q, _ = PleskExample{}.withDefaults()
	}
	r := strings.NewReplacer("{{DOMAIN}}", q.Domain, "{{DB}}", q.Database, "{{REPO}}", q.Repository)
	return r.Replace(exampleTemplate)
}

// WriteExample writes Example(p) to w; it fails on fields that cannot be
// written into the file safely.
func WriteExample(w io.Writer, p PleskExample) error {
	if _, err := p.withDefaults(); err != nil {
		return err
	}
	_, err := io.WriteString(w, Example(p))
	return err
}

const exampleTemplate = `# shopvault configuration: a PrestaShop shop on a Plesk server.
# Check it with: shopvault config check
# Durations are strings: "30s", "10m", "36h", "7d". Paths are absolute.
# The environment variables SHOPVAULT_REPO, SHOPVAULT_HOST_KEY and
# SHOPVAULT_RESTORE_KEY override repository, host-key and restore-key.

# Where backups go: an absolute path, or sftp://user@host[:port]/path.
# Hetzner Storage Boxes speak SFTP on port 23.
repository = "{{REPO}}"

# This server's age identity (created by shopvault init). It can write
# backups but cannot read them back.
host-key = "/etc/shopvault/host.key"

# The restore key reads everything. Keep it OFF this server (password
# manager, DR laptop, CI secret); set it only where restores and drills run.
# restore-key = "/root/shopvault-restore.key"

cache-dir = "/var/cache/shopvault"
state-dir = "/var/lib/shopvault"

# Pin the public keys backups are encrypted to; a repository that names
# other keys is refused. shopvault init prints them.
[recipients]
# host = ["age1..."]
# restore = ["age1..."]

[ssh]
known-hosts = "/etc/shopvault/known_hosts"
key-file = "/etc/shopvault/ssh_ed25519"
# passphrase-file = "/etc/shopvault/ssh_passphrase"
# On first contact, accept exactly this host key (ssh-keygen -lf prints it):
# accept-host-key = "SHA256:..."
connections = 4             # a Storage Box allows about 10; at most 8
connect-timeout = "30s"
# limit-upload = "20MiB"     # bytes per second; "0" is unlimited
# limit-download = "0"

# The shop's files. Patterns without "/" match a name anywhere; with "/"
# they match relative to each path.
[[sources]]
paths = ["/var/www/vhosts/{{DOMAIN}}/httpdocs"]
excludes = [
  "var/cache",          # Symfony/Smarty caches; emptied on restore anyway
  "var/logs",
  "var/sessions",
  "cache/smarty",       # PrestaShop 1.6 cache
  "cache/cachefs",
  "img/tmp",            # temporary thumbnails
  "config/xml",         # cached Addons catalogue
  "admin*/autoupgrade", # 1-click upgrade workspace, often several GB
]
exclude-caches = true
one-file-system = true

# Server configuration needed to rebuild the machine: web server, PHP,
# MariaDB, Plesk's per-domain configuration and Let's Encrypt certificates.
[[sources]]
paths = [
  "/etc/nginx",
  "/etc/php",
  "/etc/mysql",
  "/etc/letsencrypt",
  "/usr/local/psa/var/modules/letsencrypt",
  "/var/www/vhosts/system/{{DOMAIN}}/conf",
]
exclude-caches = true

# The shop's database, dumped consistently while the shop keeps running.
[[databases]]
address = "unix(/run/mysqld/mysqld.sock)/{{DB}}"
# Plesk keeps the MariaDB admin password in /etc/psa/.psa.shadow; or give a
# MariaDB option file with [client] user= and password=:
plesk = true
# credentials-file = "/etc/shopvault/my.cnf"
# databases = ["{{DB}}"]     # default: the database in the address
threads = 4
lock-timeout = "10s"        # never hold the shop's commits longer than this
lock-nontransactional = false

# A staging clone: shopvault restore latest --to staging
[targets.staging]
root = "/var/www/vhosts/staging.{{DOMAIN}}/httpdocs"
db-address = "unix(/run/mysqld/mysqld.sock)/"
db-name = "{{DB}}_staging"
db-credentials-file = "/etc/shopvault/staging.my.cnf"
domain = "staging.{{DOMAIN}}"
# domain-ssl = "staging.{{DOMAIN}}"  # default: domain
# physical-uri = "/"                 # default: the shop's own
maintenance = true
maintenance-ips = ["203.0.113.10"]
disable-webservice = true
clear-sessions = true               # drop production's customer/employee sessions
# disable-ssl = true                # for a clone without TLS
# keep-robots = false               # default: robots.txt says "Disallow: /"
# probe-url = "https://staging.{{DOMAIN}}/"
# ps_configuration values set on the clone so that it never talks to the
# outside world in live mode:
settings = [
  { name = "PAYPAL_SANDBOX", value = "1" },
  { name = "PS_WEBSERVICE", value = "0" },
]

# Which snapshots forget keeps (restic's semantics). Without this table:
# keep-daily 7, keep-weekly 4, keep-monthly 12, keep-min-verified 1.
[retention]
keep-daily = 7
keep-weekly = 4
keep-monthly = 12
# keep-last = 0
# keep-hourly = 0
# keep-yearly = 0
# keep-within = "14d"
# keep-tags = ["before-upgrade"]
keep-min-verified = 1        # snapshots proven by a drill

# systemd timers written by: shopvault schedule install
[schedule]
backup = "*-*-* 03:00"
randomized-delay = "15m"
check = "Sun *-*-* 05:00"    # "off" to disable
drill = "*-*-01 06:00:00"    # monthly; needs the restore key on this host
# drill-target = "staging"   # default: scratch directory + throwaway database

# Commands run around the nightly run, without a shell.
# [[hooks.before]]
# command = ["/usr/local/bin/shop-maintenance", "on"]
# timeout = "2m"
# [[hooks.after]]
# command = ["/usr/local/bin/shop-maintenance", "off"]

[notifications]
# healthchecks.io-style pings; a dead monitor never fails a backup.
# ping-start = "https://hc-ping.com/<uuid>/start"
# ping-success = "https://hc-ping.com/<uuid>"
# ping-failure = "https://hc-ping.com/<uuid>/fail"
ping-timeout = "10s"
# For node_exporter's textfile collector:
# prometheus-textfile = "/var/lib/prometheus/node-exporter/shopvault.prom"
`
