package sftp_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tcpProxy accepts connections on 127.0.0.1 and hands each, with a fresh
// connection to target, to pipe (which runs in its own goroutine and owns
// both). Closed at cleanup.
type tcpProxy struct {
	addr string
	port int
}

func startProxy(tb testing.TB, target string, pipe func(client, server net.Conn)) *tcpProxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			go pipe(c, up)
		}
	}()
	return &tcpProxy{addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port}
}

// via points cfg at the proxy, with a known_hosts file that trusts s's
// host key at the proxy's address.
func (p *tcpProxy) via(tb testing.TB, cfg *sftp.Config, s *sshdtest.Server) {
	tb.Helper()
	cfg.Port = p.port
	cfg.KnownHostsFile = filepath.Join(tb.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(p.addr)}, s.HostKey)
	if err := os.WriteFile(cfg.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
}
