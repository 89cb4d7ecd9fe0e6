package sftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/shopvault/shopvault/backend"
)

// Defaults and limits of Config.
const (
	DefaultConnections = 4
	// MaxConnections caps the pool: a Hetzner Storage Box accepts about 10
	// sessions per account, and doctor and other clients need some too.
	MaxConnections     = 8
	DefaultKeepAlive   = 15 * time.Second
	DefaultDialTimeout = 20 * time.Second
	// StorageBoxPort is the port Hetzner documents for key-based SFTP,
	// rsync and borg access to a Storage Box.
	StorageBoxPort = 23
)

// Config says where a repository lives on an SFTP server and how to reach it.
// ParseURL fills User, Host, Port and Path; the CLI fills the rest from flags.
type Config struct {
	User string
	Host string
	Port int    // 0 means DefaultPort(Host)
	Path string // absolute, or relative to the login directory if it does not start with "/"

	// KeyFile is an OpenSSH private key (ed25519, ECDSA or RSA). It must not
	// be readable by group or others. Empty means: use ssh-agent through
	// AgentSocket, else the default keys ~/.ssh/id_ed25519, id_ecdsa, id_rsa.
	KeyFile string
	// KeyPassphraseFile holds the passphrase of KeyFile (trailing newline ignored).
	KeyPassphraseFile string
	// AgentSocket is the ssh-agent socket; empty means $SSH_AUTH_SOCK.
	AgentSocket string

	// KnownHostsFile is checked strictly; empty means ~/.ssh/known_hosts.
	KnownHostsFile string
	// AcceptHostKey is a "SHA256:..." fingerprint the user accepted for an
	// unknown host. If the server presents exactly this key, the connection
	// proceeds and the key is appended to KnownHostsFile once
	// authentication succeeded. It never overrides a changed key.
	AcceptHostKey string

	// ReadAhead names the file types whose listings and (newest, up to a
	// budget) files Open starts reading at once, with the config, so that
	// opening a repository costs a few round trips instead of a chain of
	// them (ahead.go). Pack files are never read ahead.
	ReadAhead []backend.FileType

	// Connections is the size of the SSH connection pool (0: DefaultConnections, at most MaxConnections).
	Connections int
	// LimitUploadKiB and LimitDownloadKiB cap the bandwidth in KiB/s over
	// all connections; 0 means unlimited.
	LimitUploadKiB, LimitDownloadKiB int

	// KeepAlive is the interval of keepalive@openssh.com requests; a
	// connection that does not answer within one interval is dropped and
	// reconnected on next use. 0 means DefaultKeepAlive, negative disables.
	KeepAlive time.Duration
	// DialTimeout bounds TCP connect plus SSH handshake (0: DefaultDialTimeout).
	DialTimeout time.Duration

	// Retry governs reconnects and retries of idempotent operations.
	Retry RetryPolicy

	// OnRetry, if set, is called before each backoff sleep after a
	// transient failure (for logging "connection lost, retrying"). It is
	// called from the goroutine running the operation and must not block.
	OnRetry func(op string, attempt int, delay time.Duration, err error)

	// Now and Sleep are injected for tests; nil means the real clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// RetryPolicy is an exponential backoff for transient failures (dropped
// connections, a restarting server). Permanent failures are never retried.
type RetryPolicy struct {
	Initial    time.Duration // first delay (0: 500ms)
	Max        time.Duration // largest delay (0: 30s)
	MaxElapsed time.Duration // give up once this much time has passed since the first attempt (0: 5m)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Initial <= 0 {
		p.Initial = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 5 * time.Minute
	}
	return p
}

// IsStorageBox reports whether host is a Hetzner Storage Box.
func IsStorageBox(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return strings.HasSuffix(h, ".your-storagebox.de") || strings.HasSuffix(h, ".your-backup.de")
}

// DefaultPort is 23 for Storage Box hosts and 22 otherwise.
func DefaultPort(host string) int {
	if IsStorageBox(host) {
		return StorageBoxPort
	}
	return 22
}

// ParseURL parses sftp://user@host[:port]/path. The path is absolute on the
// server; "/~/dir" names dir relative to the login directory. On a Storage
// Box the login directory is the chroot, so /shopvault and /~/shopvault are
// the same folder.
func ParseURL(s string) (Config, error) {
	const want = "want sftp://user@host[:port]/path"
	u, err := url.Parse(s)
	if err != nil {
		return Config{}, fmt.Errorf("repository URL %q: %w (%s)", s, err, want)
	}
	if u.Scheme != "sftp" {
		return Config{}, fmt.Errorf("repository URL %q: scheme is %q, not sftp (%s)", s, u.Scheme, want)
	}
	if u.Opaque != "" || u.Host == "" {
		return Config{}, fmt.Errorf("repository URL %q: no host (%s)", s, want)
	}
	if u.User == nil || u.User.Username() == "" {
		return Config{}, fmt.Errorf("repository URL %q: no user name (%s)", s, want)
	}
	if _, ok := u.User.Password(); ok {
		return Config{}, fmt.Errorf("repository URL %q: passwords in the URL are not supported; use a key file or ssh-agent", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("repository URL %q: query and fragment are not supported (%s)", s, want)
	}
	cfg := Config{User: u.User.Username(), Host: u.Hostname()}
	if cfg.Host == "" {
		return Config{}, fmt.Errorf("repository URL %q: no host (%s)", s, want)
	}
	if !validHost(cfg.Host) {
		return Config{}, fmt.Errorf("repository URL %q: invalid host %q (IPv6 addresses go in brackets: sftp://user@[::1]:22/path)", s, cfg.Host)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Config{}, fmt.Errorf("repository URL %q: invalid port %q", s, p)
		}
		cfg.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return Config{}, fmt.Errorf("repository URL %q: empty port", s)
	} else {
		cfg.Port = DefaultPort(cfg.Host)
	}
	p := u.Path
	switch {
	case p == "/~" || strings.HasPrefix(p, "/~/"):
		p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "/~"), "/"))
		if p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return Config{}, fmt.Errorf("repository URL %q: the path must name a directory below the login directory, e.g. /~/shopvault", s)
		}
	default:
		p = path.Clean(p)
		if p == "/" || p == "." {
			return Config{}, fmt.Errorf("repository URL %q: no repository path; name a directory, e.g. sftp://%s@%s/shopvault", s, cfg.User, u.Host)
		}
	}
	for _, part := range []string{cfg.User, p} {
		if strings.IndexFunc(part, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return Config{}, fmt.Errorf("repository URL %q: control characters in the user or path are not allowed", s)
		}
	}
	cfg.Path = p
	return cfg, nil
}

// validHost accepts an IP address or a DNS name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
		default:
			return false
		}
	}
	return h != ""
}

// addr returns host:port.
func (c Config) addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Location returns the repository URL without secrets.
func (c Config) Location() string {
	p := c.Path
	if !strings.HasPrefix(p, "/") {
		p = "/~/" + p
	}
	u := url.URL{Scheme: "sftp", User: url.User(c.User), Host: c.addr(), Path: p}
	return u.String()
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		return c, errors.New("sftp: no host given")
	}
	if c.User == "" {
		return c, fmt.Errorf("sftp: no user given for %s", c.Host)
	}
	if c.Path == "" {
		return c, fmt.Errorf("sftp: no repository path given for %s", c.Host)
	}
	if c.Port == 0 {
		c.Port = DefaultPort(c.Host)
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("sftp: invalid port %d", c.Port)
	}
	switch {
	case c.Connections == 0:
		c.Connections = DefaultConnections
	case c.Connections < 0 || c.Connections > MaxConnections:
		return c, fmt.Errorf("sftp: --connections %d out of range 1..%d (a Storage Box accepts about 10 sessions per account)", c.Connections, MaxConnections)
	}
	if c.LimitUploadKiB < 0 || c.LimitDownloadKiB < 0 {
		return c, errors.New("sftp: bandwidth limits must not be negative")
	}
	if c.AcceptHostKey != "" && !strings.HasPrefix(c.AcceptHostKey, "SHA256:") {
		return c, fmt.Errorf("sftp: --accept-host-key %q is not a SHA256 fingerprint (it looks like SHA256:AbC...)", c.AcceptHostKey)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	c.Retry = c.Retry.withDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	return c, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
