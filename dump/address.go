package dump

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultSocket is the unix socket used when neither the address nor the option file names
// a host or a socket (Debian's MariaDB default).
const DefaultSocket = "/run/mysqld/mysqld.sock"

// Address says where a server is, without credentials: the go-sql-driver address syntax
// "unix(/run/mysqld/mysqld.sock)/prestashop", "tcp(127.0.0.1:3306)/prestashop_copy",
// "tcp(db.example.com)" (port 3306), or just "/prestashop" (or "") to take the host or
// socket from the option file.
type Address struct {
	Net    string // "unix", "tcp" or "" (from the credentials)
	Addr   string // socket path or host:port
	DBName string // may be empty
}

// String returns the address in the syntax ParseAddress reads.
func (a Address) String() string {
	if a.Net == "" {
		return "/" + a.DBName
	}
	s := a.Net + "(" + a.Addr + ")"
	if a.DBName != "" {
		s += "/" + a.DBName
	}
	return s
}

// ParseAddress parses a server address (see Address). Credentials in the address
// ("user:pass@...") are refused: they belong in an option file, never on a command line.
func ParseAddress(addr string) (Address, error) {
	s := strings.TrimSpace(addr)
	var a Address
	if i := strings.IndexByte(s, '('); i >= 0 {
		if at := strings.LastIndexByte(s[:i], '@'); at >= 0 || strings.Contains(s[:i], ":") {
			return a, fmt.Errorf("database address %q contains credentials: put user and password in an option file (--db-credentials) instead", addr)
		}
		a.Net = s[:i]
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return a, fmt.Errorf("database address %q: missing ')' (want e.g. unix(/run/mysqld/mysqld.sock)/prestashop or tcp(127.0.0.1:3306)/prestashop)", addr)
		}
		a.Addr = s[i+1 : i+j]
		s = s[i+j+1:]
		switch a.Net {
		case "unix":
			if a.Addr == "" {
				return a, fmt.Errorf("database address %q: empty socket path", addr)
			}
		case "tcp":
			if a.Addr == "" {
				return a, fmt.Errorf("database address %q: empty host", addr)
			}
			if _, _, err := net.SplitHostPort(a.Addr); err != nil {
				a.Addr = net.JoinHostPort(strings.Trim(a.Addr, "[]"), "3306")
			} else if h, p, _ := net.SplitHostPort(a.Addr); h == "" || !validPort(p) {
				return a, fmt.Errorf("database address %q: bad host:port %q", addr, a.Addr)
			}
		default:
			return a, fmt.Errorf("database address %q: unknown network %q (want unix or tcp)", addr, a.Net)
		}
	} else if strings.Contains(s, "@") {
		return a, fmt.Errorf("database address %q contains credentials: put user and password in an option file (--db-credentials) instead", addr)
	}
	if s != "" {
		if s[0] != '/' {
			return a, fmt.Errorf("database address %q: want unix(SOCKET)/DB, tcp(HOST:PORT)/DB or /DB", addr)
		}
		s = s[1:]
		if i := strings.IndexByte(s, '?'); i >= 0 {
			return a, fmt.Errorf("database address %q: parameters (%q) are not supported", addr, s[i:])
		}
		if strings.ContainsAny(s, "/\x00") {
			return a, fmt.Errorf("database address %q: bad database name %q", addr, s)
		}
		a.DBName = s
	}
	return a, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// Credentials are what an option file (or Plesk) provides. Empty fields mean "not set".
type Credentials struct {
	User     string
	Password string
	Host     string
	Socket   string
	Port     int
}

// Config returns a go-sql-driver configuration for the address with the credentials. The
// address wins over the credentials' host/socket/port; without either, a host "localhost"
// or nothing at all means the unix socket (as the stock client does), DefaultSocket when
// none is named. The user defaults to "root". The connection uses utf8mb4.
func (a Address) Config(c Credentials) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = c.User
	if cfg.User == "" {
		cfg.User = "root"
	}
	cfg.Passwd = c.Password
	cfg.DBName = a.DBName
	switch {
	case a.Net != "":
		cfg.Net, cfg.Addr = a.Net, a.Addr
	case c.Host != "" && c.Host != "localhost":
		port := c.Port
		if port == 0 {
			port = 3306
		}
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(c.Host, strconv.Itoa(port))
	case c.Socket != "":
		cfg.Net, cfg.Addr = "unix", c.Socket
	default:
		cfg.Net, cfg.Addr = "unix", DefaultSocket
	}
	_ = cfg.Apply(mysql.Charset(SessionCharset, ""))
	cfg.Timeout = 10 * time.Second
	return cfg
}

// PleskCredentials reads the MariaDB administrator credentials the way Plesk stores them on
// Linux: user "admin", password = the content of /etc/psa/.psa.shadow (shadowPath), used
// as is (on current Plesk versions it looks like "$AES-128-CBC$..."; that string IS the
// password, as in Plesk's own `MYSQL_PWD=$(cat /etc/psa/.psa.shadow) mysql -uadmin`), over
// the local socket. The file is readable by root only, so run as root.
func PleskCredentials(shadowPath string) (Credentials, error) {
	b, err := os.ReadFile(shadowPath)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return Credentials{}, fmt.Errorf("read Plesk admin password: %w (run as root)", err)
		}
		return Credentials{}, fmt.Errorf("read Plesk admin password: %w (is this a Plesk server?)", err)
	}
	pw := strings.TrimRight(string(b), "\r\n \t")
	if pw == "" || strings.ContainsAny(pw, "\n\x00") {
		return Credentials{}, fmt.Errorf("read Plesk admin password: %s does not hold a single-line password", shadowPath)
	}
	return Credentials{User: "admin", Password: pw, Host: "localhost"}, nil
}
