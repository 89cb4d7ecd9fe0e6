// Package sshdtest starts a real OpenSSH sshd on 127.0.0.1 for tests.
//
// The server runs from a generated configuration in a temporary directory with
// its own ed25519 host key, an authorized_keys file holding a generated client
// key, "Subsystem sftp internal-sftp", no PAM and root login by key. It is
// meant for tests where host keys, authentication and dropped connections are
// the point; it is never used by production code.
//
// When /usr/sbin/sshd is missing, Start skips the test, or fails it when the
// environment variable CI is "true".
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is where the sshd binary is expected (Debian's openssh-server).
const SSHDPath = "/usr/sbin/sshd"

// Option changes how Start configures the server.
type Option func(*options)

type options struct {
	extra   []string
	listen  string
	wrapper []string
}

// WithListenAddress makes sshd listen on ip instead of 127.0.0.1 (e.g. an
// address inside a network namespace, with WithWrapper).
func WithListenAddress(ip string) Option {
	return func(o *options) { o.listen = ip }
}

// WithWrapper runs sshd through a command prefix, e.g.
// WithWrapper("ip", "netns", "exec", "bench") to run it inside a network
// namespace with emulated latency. The prefix must exec sshd.
func WithWrapper(argv ...string) Option {
	return func(o *options) { o.wrapper = argv }
}

// WithConfig adds raw sshd_config lines (e.g. "MaxSessions 2",
// "MaxStartups 2:100:2") to the generated configuration. They come first:
// sshd keeps the first value it reads for a keyword, so they override the
// defaults.
func WithConfig(lines ...string) Option {
	return func(o *options) { o.extra = append(o.extra, lines...) }
}

// Server is a running sshd. Its fields are read-only.
type Server struct {
	Addr               string // "127.0.0.1:PORT" (or the WithListenAddress address)
	Port               int
	User               string // the login user, the user running the test (root in CI)
	Root               string // an empty temporary directory to use as repository parent
	ClientKeyPath      string // OpenSSH private key authorized on the server, mode 0600
	KnownHostsPath     string // a known_hosts file with one line for the current host key
	HostKeyFingerprint string // "SHA256:..." of the current host key
	HostKey            ssh.PublicKey
	ConfigPath         string // the generated sshd_config

	dir        string
	hostKeyPth string
	wrapper    []string
	mu         sync.Mutex
	cmd        *exec.Cmd
	log        *lockedBuffer
	done       chan struct{}
}

// Available reports whether sshd can be started here.
func Available() bool {
	_, err := os.Stat(SSHDPath)
	return err == nil
}

// SkipOrFail skips tb when sshd is missing, or fails it when CI=true.
func SkipOrFail(tb testing.TB) {
	tb.Helper()
	if Available() {
		return
	}
	msg := fmt.Sprintf("sshdtest: %s not found; install openssh-server to run SFTP tests", SSHDPath)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// Start runs sshd with a generated configuration and registers cleanup that
// kills it and every session process it forked.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	SkipOrFail(tb)
	o := options{listen: "127.0.0.1"}
	for _, opt := range opts {
		opt(&o)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatalf("sshdtest: create /run/sshd: %v", err)
	}
	dir, err := filepath.Abs(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{
		dir:            dir,
		Root:           filepath.Join(dir, "root"),
		ClientKeyPath:  filepath.Join(dir, "id_ed25519"),
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
		ConfigPath:     filepath.Join(dir, "sshd_config"),
		hostKeyPth:     filepath.Join(dir, "ssh_host_ed25519_key"),
		User:           currentUser(),
		wrapper:        o.wrapper,
	}
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		tb.Fatal(err)
	}
	clientPub, err := writeKey(s.ClientKeyPath, "sshdtest-client")
	if err != nil {
		tb.Fatalf("sshdtest: client key: %v", err)
	}
	auth := ssh.MarshalAuthorizedKey(clientPub)
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), auth, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := s.newHostKey(); err != nil {
		tb.Fatalf("sshdtest: host key: %v", err)
	}
	s.Port = freePort(tb)
	s.Addr = net.JoinHostPort(o.listen, strconv.Itoa(s.Port))
	if err := s.writeKnownHosts(); err != nil {
		tb.Fatal(err)
	}
	cfg := append([]string{}, o.extra...)
	cfg = append(cfg,
		"Port "+strconv.Itoa(s.Port),
		"ListenAddress "+o.listen,
		"HostKey "+s.hostKeyPth,
		"PidFile "+filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile "+filepath.Join(dir, "authorized_keys"),
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"Subsystem sftp internal-sftp",
		"MaxStartups 100:30:200",
		"MaxSessions 20",
		"LogLevel VERBOSE",
	)
	if err := os.WriteFile(s.ConfigPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Kill()
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", s.Log())
		}
	})
	s.start(tb)
	return s
}

// URL returns the sftp URL for an absolute path on the server.
func (s *Server) URL(path string) string {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return fmt.Sprintf("sftp://%s@%s%s", s.User, s.Addr, path)
}

// Log returns what sshd wrote to stderr so far (all of its runs).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// Kill stops sshd and every session process it forked, dropping all open
// connections as a crash of the server would. Kill on a stopped server is a
// no-op.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	// Freeze the listener so it cannot fork while we collect its children.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Freeze stops (SIGSTOP) sshd and its session processes without closing any
// connection: the server stops answering, as behind a dead link. Thaw
// resumes it. Freeze on a stopped server is a no-op.
func (s *Server) Freeze() { s.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signalAll(syscall.SIGCONT) }

func (s *Server) signalAll(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, sig)
	for _, c := range descendants(pid) {
		_ = syscall.Kill(c, sig)
	}
}

// Restart kills sshd (if running) and starts it again on the same port with
// the same host key.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Kill()
	s.start(tb)
}

// ChangeHostKey generates a new host key, restarts sshd with it and updates
// HostKey and HostKeyFingerprint. KnownHostsPath is left with the old key, so
// clients using it see a changed host key.
func (s *Server) ChangeHostKey(tb testing.TB) {
	tb.Helper()
	s.Kill()
	if err := s.newHostKey(); err != nil {
		tb.Fatalf("sshdtest: host key: %v", err)
	}
	s.start(tb)
}

// AuthorizeKey adds pub to the server's authorized_keys (read by sshd at
// each login, so no restart is needed).
func (s *Server) AuthorizeKey(tb testing.TB, pub ssh.PublicKey) {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(s.dir, "authorized_keys"), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		tb.Fatal(err)
	}
}

// KnownHostsLine returns a known_hosts line for the current host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

func (s *Server) writeKnownHosts() error {
	return os.WriteFile(s.KnownHostsPath, []byte(s.KnownHostsLine()+"\n"), 0o600)
}

func (s *Server) newHostKey() error {
	pub, err := writeKey(s.hostKeyPth, "sshdtest-host")
	if err != nil {
		return err
	}
	s.HostKey = pub
	s.HostKeyFingerprint = ssh.FingerprintSHA256(pub)
	return nil
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		s.log = &lockedBuffer{}
	}
	var lastErr error
	// The port may briefly be unavailable right after a kill; retry a few times.
	for attempt := 0; attempt < 20; attempt++ {
		argv := append(append([]string{}, s.wrapper...), SSHDPath, "-D", "-e", "-f", s.ConfigPath)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout = s.log
		cmd.Stderr = s.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("sshdtest: start sshd: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if err := waitReady(s.Addr, done, 10*time.Second); err != nil {
			_ = cmd.Process.Kill()
			<-done
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.cmd, s.done = cmd, done
		return
	}
	tb.Fatalf("sshdtest: sshd did not start on %s: %v\nlog:\n%s", s.Addr, lastErr, s.log.String())
}

// waitReady dials addr until sshd answers with its version banner.
func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("sshd exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 8)
			n, _ := c.Read(buf)
			_ = c.Close()
			if bytes.HasPrefix(buf[:n], []byte("SSH-")) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SSH banner after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeKey generates an ed25519 key, writes it in OpenSSH format with mode
// 0600 and returns its public half.
func writeKey(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

// WriteClientKey writes a new, unauthorized ed25519 key to path (mode 0600)
// and returns its public half; for tests of a wrong client key.
func WriteClientKey(path string) (ssh.PublicKey, error) {
	return writeKey(path, "sshdtest-other")
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("sshdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return os.Getenv("LOGNAME")
}

// descendants returns the pids of every process below pid, read from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may contain spaces; fields follow the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
