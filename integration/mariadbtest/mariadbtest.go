// Package mariadbtest starts a throwaway mariadbd for tests.
//
// Each Start call runs mariadb-install-db into a fresh datadir under t.TempDir() and
// starts mariadbd on 127.0.0.1 with a free port and a unix socket, as the current user,
// with small InnoDB settings, binary logging on (so dump positions can be read) and no
// durability (tests do not need fsync). The server is shut down on test cleanup.
//
// When the MariaDB binaries are missing the test is skipped with a clear message, except
// under CI=true, where it fails: a CI run must never silently skip the database tests.
package mariadbtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// startTimeout bounds how long Start waits for the server to accept connections.
const startTimeout = 60 * time.Second

// Server is a running throwaway mariadbd.
type Server struct {
	// Socket is the unix socket path (short enough for sun_path).
	Socket string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Datadir is the server's data directory.
	Datadir string
	// ErrorLogPath is mariadbd's error log.
	ErrorLogPath string
	// Version is the server version string (SELECT VERSION()).
	Version string

	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	mu      sync.Mutex
	stopped bool
}

// binaries holds the paths of the MariaDB programs the harness runs.
type binaries struct {
	server, installDB, client, dump string
}

func lookPath(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin", "/usr/libexec"} {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

func findBinaries() (binaries, error) {
	b := binaries{
		server:    lookPath("mariadbd", "mysqld"),
		installDB: lookPath("mariadb-install-db", "mysql_install_db"),
		client:    lookPath("mariadb", "mysql"),
		dump:      lookPath("mariadb-dump", "mysqldump"),
	}
	var missing []string
	if b.server == "" {
		missing = append(missing, "mariadbd")
	}
	if b.installDB == "" {
		missing = append(missing, "mariadb-install-db")
	}
	if b.client == "" {
		missing = append(missing, "mariadb")
	}
	if b.dump == "" {
		missing = append(missing, "mariadb-dump")
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("MariaDB binaries not found: %s (install the Debian packages mariadb-server and mariadb-client)", strings.Join(missing, ", "))
	}
	return b, nil
}

// SkipOrFail skips the test with msg, or fails it when the environment variable CI is "true".
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing server is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// Binary returns the path of a MariaDB client program ("mariadb", "mariadb-dump", ...),
// skipping or failing the test (see SkipOrFail) when it is missing.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p := lookPath(name)
	if p == "" {
		SkipOrFail(t, fmt.Sprintf("%s not found in PATH (install mariadb-client)", name))
	}
	return p
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts mariadbd with its datadir and socket under t.TempDir(), on 127.0.0.1 and a
// free port, running as the current user, and registers cleanup (shutdown). Missing
// binaries: t.Skip locally, t.Fatal when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bins, err := findBinaries()
	if err != nil {
		SkipOrFail(t, err.Error())
	}
	base := t.TempDir()
	datadir := filepath.Join(base, "data")
	sockDir := base
	// sun_path holds 108 bytes; long test names make long temp dirs.
	if len(filepath.Join(base, "mysqld.sock")) > 100 {
		d, err := os.MkdirTemp("", "mdb")
		if err != nil {
			t.Fatalf("mariadbtest: socket dir: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		sockDir = d
	}
	s := &Server{
		Socket:       filepath.Join(sockDir, "mysqld.sock"),
		Datadir:      datadir,
		ErrorLogPath: filepath.Join(base, "error.log"),
	}
	user := "root"
	if os.Geteuid() != 0 {
		user = os.Getenv("USER")
	}

	install := exec.Command(bins.installDB, "--no-defaults", "--datadir="+datadir, "--user="+user,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
		"--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadbtest: %s failed: %v\n%s", bins.installDB, err, out)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("mariadbtest: free port: %v", err)
		}
		s.Port = port
		if lastErr = s.launch(bins.server, user); lastErr == nil {
			break
		}
		if !strings.Contains(s.ErrorLog(), "Address already in use") {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("mariadbtest: start mariadbd: %v\n--- mariadbd error log (%s) ---\n%s", lastErr, s.ErrorLogPath, s.ErrorLog())
	}
	t.Cleanup(func() { s.Stop(t) })

	db := s.DB(t, "")
	if err := db.QueryRow("SELECT VERSION()").Scan(&s.Version); err != nil {
		t.Fatalf("mariadbtest: SELECT VERSION(): %v", err)
	}
	return s
}

// launch starts the mariadbd process and waits until it accepts connections on the socket.
func (s *Server) launch(server, user string) error {
	os.Remove(s.ErrorLogPath)
	args := []string{
		"--no-defaults",
		"--datadir=" + s.Datadir,
		"--socket=" + s.Socket,
		fmt.Sprintf("--port=%d", s.Port),
		"--bind-address=127.0.0.1",
		"--user=" + user,
		"--pid-file=" + filepath.Join(s.Datadir, "mysqld.pid"),
		"--log-error=" + s.ErrorLogPath,
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=32M",
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0",
		"--sync-binlog=0",
		"--log-bin=" + filepath.Join(s.Datadir, "binlog"),
		"--server-id=1",
		"--max-allowed-packet=64M",
		"--max-connections=200",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--loose-innodb-use-native-aio=0",
	}
	cmd := exec.Command(server, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Own process group, so a Ctrl-C on the test does not race our shutdown.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", server, err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	s.stopped = false
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("mariadbd exited during startup: %v %s", s.waitErr, out.String())
		default:
		}
		if c, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
			c.Close()
			db, err := sql.Open("mysql", s.RootConfig("").FormatDSN())
			if err == nil {
				err = db.Ping()
				db.Close()
				if err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("mariadbd did not accept connections on %s within %s", s.Socket, startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ErrorLog returns the content of mariadbd's error log (for failure messages).
func (s *Server) ErrorLog() string {
	b, err := os.ReadFile(s.ErrorLogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read error log: %v)", err)
	}
	return string(b)
}

// RootConfig returns a go-sql-driver config for root over the unix socket, using database db
// ("" for none).
func (s *Server) RootConfig(db string) *mysql.Config {
	c := mysql.NewConfig()
	c.User = "root"
	c.Net = "unix"
	c.Addr = s.Socket
	c.DBName = db
	c.ParseTime = false
	c.InterpolateParams = false
	c.MultiStatements = true
	_ = c.Apply(mysql.Charset("utf8mb4", ""))
	c.Timeout = 10 * time.Second
	return c
}

// TCPConfig is RootConfig over TCP on 127.0.0.1:Port.
func (s *Server) TCPConfig(db string) *mysql.Config {
	c := s.RootConfig(db)
	c.Net = "tcp"
	c.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
	return c
}

// DB opens a connection pool as root over the unix socket to database db ("" for none),
// pings it, and closes it on cleanup.
func (s *Server) DB(t testing.TB, db string) *sql.DB {
	t.Helper()
	conn, err := sql.Open("mysql", s.RootConfig(db).FormatDSN())
	if err != nil {
		t.Fatalf("mariadbtest: open %q: %v", db, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Ping(); err != nil {
		t.Fatalf("mariadbtest: ping %q: %v\n--- mariadbd error log ---\n%s", db, err, s.ErrorLog())
	}
	return conn
}

// Exec runs each statement in database db ("" for none) on one connection, failing the test
// on the first error (naming the statement).
func (s *Server) Exec(t testing.TB, db string, stmts ...string) {
	t.Helper()
	conn, err := sql.Open("mysql", s.RootConfig(db).FormatDSN())
	if err != nil {
		t.Fatalf("mariadbtest: open %q: %v", db, err)
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	for _, q := range stmts {
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("mariadbtest: exec in %q: %v\nstatement: %s", db, err, q)
		}
	}
}

// ClientArgs returns the arguments that make a stock client program (mariadb, mariadb-dump)
// connect as root over the socket, without reading any option file.
func (s *Server) ClientArgs() []string {
	return []string{"--no-defaults", "--socket=" + s.Socket, "--user=root"}
}

// Command returns an exec.Cmd for the stock client program name ("mariadb", "mariadb-dump",
// ...) with ClientArgs followed by args. Skips or fails the test if name is missing.
func (s *Server) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	bin := Binary(t, name)
	return exec.Command(bin, append(s.ClientArgs(), args...)...)
}

// LoadSQLFile loads the SQL file at path into database db (created if missing) with the
// stock mariadb client.
func (s *Server) LoadSQLFile(t testing.TB, db, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	defer f.Close()
	if db != "" {
		s.Exec(t, "", "CREATE DATABASE IF NOT EXISTS `"+strings.ReplaceAll(db, "`", "``")+"`")
	}
	args := []string{"--batch"}
	if db != "" {
		args = append(args, db)
	}
	cmd := s.Command(t, "mariadb", args...)
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadbtest: mariadb %s < %s: %v\n%s", db, path, err, out)
	}
}

// SharedDir finds the project's shared/ directory (DESIGN.md, testdata, bench) by walking
// up from the working directory looking for shared/testdata. Skips or fails the test when
// it cannot be found.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("mariadbtest: getwd: %v", err)
	}
	for {
		cand := filepath.Join(dir, "shared")
		if st, err := os.Stat(filepath.Join(cand, "testdata")); err == nil && st.IsDir() {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	SkipOrFail(t, "shared/testdata not found in any parent of the working directory (CI lays shared/ beside the checkout)")
	return ""
}

// PrestaShopDir returns shared/testdata/prestashop (see SharedDir).
func PrestaShopDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(SharedDir(t), "testdata", "prestashop")
}

// LoadPrestaShop loads the real PrestaShop 9.0.0 schema and the test seed into database db
// with shared/testdata/prestashop/load.sh. opts are load.sh options placed before the
// database name (e.g. "-s" for schema only, "-p", "shop_" for another prefix, "-f").
func (s *Server) LoadPrestaShop(t testing.TB, db string, opts ...string) {
	t.Helper()
	script := filepath.Join(PrestaShopDir(t), "load.sh")
	client := Binary(t, "mariadb")
	args := append(append(append([]string{}, opts...), db, client), s.ClientArgs()...)
	cmd := exec.Command(script, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadbtest: load.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Stop shuts the server down cleanly (SIGTERM, then SIGKILL after 30 s). It is idempotent
// and registered as cleanup by Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Logf("mariadbtest: mariadbd did not stop within 30s; killed")
	}
}

// Kill kills the server at once (SIGKILL), like a crash, and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart stops the server (if running) and starts it again on the same datadir, socket
// and port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	bins, err := findBinaries()
	if err != nil {
		SkipOrFail(t, err.Error())
	}
	user := "root"
	if os.Geteuid() != 0 {
		user = os.Getenv("USER")
	}
	if err := s.launch(bins.server, user); err != nil {
		t.Fatalf("mariadbtest: restart mariadbd: %v\n--- mariadbd error log ---\n%s", err, s.ErrorLog())
	}
}

// Running reports whether the server process is still alive.
func (s *Server) Running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// WaitExit waits up to d for the server process to exit; it reports whether it did.
func (s *Server) WaitExit(ctx context.Context, d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	case <-ctx.Done():
		return false
	}
}

// errNotRunning is returned by helpers that need a live server.
var errNotRunning = errors.New("mariadbtest: server not running")

// CheckRunning returns an error when the server process has exited (with its error log).
func (s *Server) CheckRunning() error {
	if s.Running() {
		return nil
	}
	return fmt.Errorf("%w: %v\n%s", errNotRunning, s.waitErr, s.ErrorLog())
}
