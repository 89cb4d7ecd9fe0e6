package sftp_test

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// muteProxy forwards TCP connections to an sshd. mute stops passing the
// server's bytes on the connections open at that moment while the
// client's still reach the server: a link that died after a request went
// out and before its answer came back.
type muteProxy struct {
	*tcpProxy

	mu    sync.Mutex
	muted []*atomic.Bool
}

func startMuteProxy(t *testing.T, target string) *muteProxy {
	p := &muteProxy{}
	p.tcpProxy = startProxy(t, target, func(c, up net.Conn) {
		m := &atomic.Bool{}
		p.mu.Lock()
		p.muted = append(p.muted, m)
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(up, c)
			_ = up.Close()
		}()
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 && !m.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = c.Close()
	})
	return p
}

func (p *muteProxy) mute() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.muted {
		m.Store(true)
	}
}

// A Save whose OPEN the server carried out but whose answer never came
// (the connection died in between) leaves no temporary file: the retry
// removes it.
func TestSaveLostOpenLeavesNoTemp(t *testing.T) {
	s := sshdtest.Start(t)
	p := startMuteProxy(t, s.Addr)
	cfg := config(t, s, 1)
	p.via(t, &cfg, s)
	cfg.KeepAlive = 200 * time.Millisecond
	ctx := t.Context()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	h := backend.Handle{Type: backend.PackFile, Name: "5a5a0001"}
	data := bytes.Repeat([]byte("pack"), 1<<16)
	// A pack in the same shard first, so that the OPEN creates the file
	// at once (in a new shard it would fail before MkdirAll).
	first := backend.Handle{Type: backend.PackFile, Name: "5a5a0000"}
	if err := be.Save(ctx, first, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	p.mute()
	if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("save over a connection that went silent: %v", err)
	}
	if got := readFile(t, filepath.Join(cfg.Path, backend.Path(h))); !bytes.Equal(got, data) {
		t.Fatalf("saved pack holds %d bytes, want %d", len(got), len(data))
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Path, "data", "*", sftp.TempPrefix+"*"))
	if len(left) != 0 {
		t.Fatalf("the lost attempt left %v", left)
	}
	p.mu.Lock()
	n := len(p.muted)
	p.mu.Unlock()
	if n < 2 {
		t.Fatalf("%d connections through the proxy: the save did not reconnect", n)
	}
}
