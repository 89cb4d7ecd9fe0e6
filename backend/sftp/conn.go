package sftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/shopvault/shopvault/backend"
)

// Ciphers in order of preference: AES-GCM is fastest with AES-NI, then
// ChaCha20 for machines without it.
var preferredCiphers = []string{
	ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM,
	ssh.CipherAES128CTR, ssh.CipherAES256CTR,
}

// maxRequestsPerFile is how many SFTP requests of 32 KiB one file transfer
// keeps in flight (2 MiB), enough to fill a 20 ms link at ~100 MB/s.
const maxRequestsPerFile = 64

// conn is one SSH connection with its SFTP session.
type conn struct {
	ssh  *ssh.Client
	sftp *pkgsftp.Client
	tcp  *readTracker

	fsync, posixRename, statvfs bool

	rawMu    sync.Mutex
	raw      *rawSession        // the read session (rawread.go)
	rawFirst <-chan *rawSession // the one dial opened (nil if refused), until taken
	rawOff   bool               // the server refused it or broke its protocol: read through pkg/sftp

	dead      chan struct{}
	closeOnce sync.Once
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.dead)
		// The SSH connection first: closing the SFTP client waits for
		// its reader, which a silent server would never release.
		if c.ssh != nil {
			_ = c.ssh.Close()
		}
		if c.sftp != nil {
			_ = c.sftp.Close()
		}
		c.rawMu.Lock()
		if c.raw != nil {
			c.raw.close()
		}
		c.rawMu.Unlock()
	})
}

// rawReader returns the connection's read session, opening it on first use;
// nil if the server does not give one (then reads go through pkg/sftp).
func (c *conn) rawReader() *rawSession {
	c.rawMu.Lock()
	defer c.rawMu.Unlock()
	if c.rawOff || c.isDead() {
		return nil
	}
	if c.rawFirst != nil {
		rs := <-c.rawFirst
		c.rawFirst = nil
		if rs == nil {
			c.rawOff = true
			return nil
		}
		c.raw = rs
	}
	if c.raw != nil && c.raw.alive() {
		return c.raw
	}
	done := c.tcp.eagerAcks()
	rs, err := openRawSession(c.ssh, rawOpenTimeout)
	done()
	if err != nil {
		c.rawOff = true
		c.raw = nil
		return nil
	}
	c.raw = rs
	return rs
}

// startReader takes the read session the dial opened, in the background.
func (c *conn) startReader() { go c.rawReader() }

// rawBroken stops using the read session after it misbehaved.
func (c *conn) rawBroken() {
	c.rawMu.Lock()
	c.rawOff = true
	if c.raw != nil {
		c.raw.close()
		c.raw = nil
	}
	c.rawMu.Unlock()
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// dialer makes connections for a pool.
type dialer struct {
	cfg  Config
	auth *auth
	keys *hostKeys
}

// dial connects, verifies the host key, authenticates and starts the SFTP
// subsystem (never a shell or exec). Errors that a retry cannot fix are
// marked backend.Permanent.
func (d *dialer) dial(ctx context.Context) (*conn, error) {
	addr := d.cfg.addr()
	nd := net.Dialer{Timeout: d.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, transient(fmt.Errorf("connect to %s: %w", addr, err))
	}
	tcp := newReadTracker(raw)
	methods, release, err := d.auth.methods()
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	defer release()
	defer tcp.eagerAcks()()
	_ = tcp.SetDeadline(time.Now().Add(d.cfg.DialTimeout))
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(time.Unix(1, 0)) })
	cc := &ssh.ClientConfig{
		User:              d.cfg.User,
		Auth:              methods,
		HostKeyCallback:   d.keys.check,
		HostKeyAlgorithms: d.keys.algorithms(addr, tcp.RemoteAddr()),
		Timeout:           d.cfg.DialTimeout,
		ClientVersion:     "SSH-2.0-shopvault",
		Config:            ssh.Config{Ciphers: preferredCiphers},
	}
	sc, chans, reqs, err := ssh.NewClientConn(tcp, addr, cc)
	stop()
	if err != nil {
		_ = tcp.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, d.handshakeError(addr, err)
	}
	_ = tcp.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	if err := d.keys.record(addr); err != nil {
		_ = client.Close()
		return nil, backend.Permanent(err)
	}
	// The pkg/sftp session first (a server that allows one session per
	// connection must give it the one), then the read session is opened
	// while pkg/sftp's starts: its four round trips no longer follow
	// the dial (the first loads of an open wait for it).
	sess, err := client.NewSession()
	if err != nil {
		_ = client.Close()
		return nil, transient(fmt.Errorf("start sftp on %s: %w", addr, err))
	}
	rawc := make(chan *rawSession, 1)
	go func() {
		defer tcp.eagerAcks()()
		rs, err := openRawSession(client, rawOpenTimeout)
		if err != nil {
			rs = nil
		}
		rawc <- rs
	}()
	sc2, err := startSFTP(sess,
		pkgsftp.UseConcurrentWrites(true),
		pkgsftp.UseConcurrentReads(true),
		pkgsftp.MaxConcurrentRequestsPerFile(maxRequestsPerFile),
		pkgsftp.UseFstat(true),
	)
	if err != nil {
		_ = client.Close()
		if strings.Contains(err.Error(), "subsystem request failed") {
			return nil, backend.Permanent(fmt.Errorf("%s does not offer the sftp subsystem (enable SFTP for this account): %w", addr, err))
		}
		return nil, transient(fmt.Errorf("start sftp on %s: %w", addr, err))
	}
	c := &conn{ssh: client, sftp: sc2, tcp: tcp, dead: make(chan struct{}), rawFirst: rawc}
	_, c.fsync = sc2.HasExtension("fsync@openssh.com")
	_, c.posixRename = sc2.HasExtension("posix-rename@openssh.com")
	_, c.statvfs = sc2.HasExtension("statvfs@openssh.com")
	go func() {
		_ = client.Wait()
		c.close()
	}()
	if d.cfg.KeepAlive > 0 {
		go keepAlive(c, d.cfg.KeepAlive)
	}
	return c, nil
}

// startSFTP starts the sftp subsystem on sess and pkg/sftp's client over it
// (pkgsftp.NewClient, on a session opened beforehand).
func startSFTP(sess *ssh.Session, opts ...pkgsftp.ClientOption) (*pkgsftp.Client, error) {
	w, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		return nil, err
	}
	return pkgsftp.NewClientPipe(r, w, opts...)
}

func (d *dialer) handshakeError(addr string, err error) error {
	var uh *UnknownHostError
	var hc *HostKeyChangedError
	switch {
	case errors.As(err, &uh):
		return backend.Permanent(uh) // without "ssh: handshake failed: "
	case errors.As(err, &hc):
		return backend.Permanent(hc)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return backend.Permanent(&AuthError{User: d.cfg.User, Host: addr, Keys: d.auth.desc, Err: err})
	case strings.Contains(err.Error(), "host key") || strings.Contains(err.Error(), "knownhosts"):
		return backend.Permanent(fmt.Errorf("ssh handshake with %s: %w", addr, err))
	}
	// EOF or reset during the handshake: the server is restarting or
	// refused for load (MaxStartups); worth a retry.
	return transient(fmt.Errorf("ssh handshake with %s: %w", addr, err))
}

// keepAlive sends keepalive@openssh.com every interval (at most one
// unanswered at a time) and drops the connection when nothing at all has
// been received from the server for two intervals. Judging by any received
// traffic, not by the keepalive's own reply, keeps a connection alive on a
// slow uplink where the reply queues behind megabytes of uploads that the
// server is still acknowledging. Liveness uses the real clock.
func keepAlive(c *conn, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	outstanding := make(chan struct{}, 1)
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		if time.Since(c.tcp.lastRead()) > 2*interval {
			c.close()
			return
		}
		select {
		case outstanding <- struct{}{}:
			go func() {
				_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
				<-outstanding
				if err != nil {
					c.close()
				}
			}()
		default: // the previous keepalive is still unanswered
		}
	}
}

// readTracker records when the server last sent anything, and
// acknowledges at once what it reads while eager acks are on.
type readTracker struct {
	net.Conn
	last  atomic.Int64 // unix nanoseconds
	sc    syscall.RawConn
	eager atomic.Int32 // > 0: acknowledge every read at once
}

func newReadTracker(c net.Conn) *readTracker {
	t := &readTracker{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		t.sc, _ = sc.SyscallConn()
	}
	t.last.Store(time.Now().UnixNano())
	return t
}

// eagerAcks turns off delayed acknowledgements until the returned func is
// called. For the handshake and channel opens: there sshd writes two small
// messages in a row (with Nagle's algorithm on its non-interactive socket)
// and holds the second until the first is acknowledged, which Linux delays
// by 40 ms. Measured on loopback: connect + auth + sftp subsystem 78 ms
// with delayed acks, 40 ms without. During transfers the acks are left to
// the kernel (no extra system call per read).
func (t *readTracker) eagerAcks() (done func()) {
	if t == nil || t.sc == nil {
		return func() {}
	}
	t.eager.Add(1)
	return func() { t.eager.Add(-1) }
}

func (t *readTracker) Read(p []byte) (int, error) {
	if t.eager.Load() > 0 {
		quickAck(t.sc)
	}
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (t *readTracker) lastRead() time.Time { return time.Unix(0, t.last.Load()) }

// pool holds up to n connections, made lazily and remade after they die.
type pool struct {
	dial   func(ctx context.Context) (*conn, error)
	slots  []*slot
	closed atomic.Bool
	// done is cancelled by close, aborting dials in progress.
	done   context.Context
	cancel context.CancelFunc
}

type slot struct {
	busy atomic.Int32
	mu   sync.Mutex // guards c; held while dialing
	c    *conn
	live atomic.Pointer[conn] // c, readable without waiting for a dial
}

// dialPenalty is what an unconnected slot counts as in get: an operation
// shares a connection with up to this many others rather than wait for a
// handshake (SFTP multiplexes requests; a dial is a dozen round trips).
// Opening a repository sends a burst of small reads while the pool warms
// up (ahead.go): with 2 here, four listings at 20 ms RTT waited 0.3 s for
// dials instead of sharing the connection that was up.
const dialPenalty = 8

func (s *slot) load() int32 {
	n := s.busy.Load()
	if c := s.live.Load(); c == nil || c.isDead() {
		n += dialPenalty
	}
	return n
}

var errClosed = errors.New("sftp backend is closed")

func newPool(n int, dial func(ctx context.Context) (*conn, error)) *pool {
	p := &pool{dial: dial}
	p.done, p.cancel = context.WithCancel(context.Background())
	for i := 0; i < n; i++ {
		p.slots = append(p.slots, &slot{})
	}
	return p
}

// get returns the connection of the least busy slot, connecting it if
// needed. The caller must call put(s) when done.
func (p *pool) get(ctx context.Context) (*slot, *conn, error) {
	if p.closed.Load() {
		return nil, nil, errClosed
	}
	var best *slot
	var min int32
	for _, s := range p.slots {
		if n := s.load(); best == nil || n < min {
			best, min = s, n
		}
	}
	best.busy.Add(1)
	c, err := best.conn(ctx, p)
	if err != nil {
		best.busy.Add(-1)
		return nil, nil, err
	}
	return best, c, nil
}

func (p *pool) put(s *slot) { s.busy.Add(-1) }

// warm connects every idle slot in the background, so that the first
// burst of parallel transfers finds its connections (and their read
// sessions) made instead of paying a full SSH handshake each — a dozen
// round trips, most of a second at 20 ms when paid one after the other.
// A failed dial leaves the slot empty: the next get dials again and
// reports the error. ready is called with each connection made.
func (p *pool) warm(ready func(*conn)) {
	for _, s := range p.slots {
		if p.closed.Load() {
			return
		}
		go func() {
			if c := s.live.Load(); c != nil && !c.isDead() {
				return
			}
			if c, err := s.conn(p.done, p); err == nil {
				ready(c)
			}
		}()
	}
}

func (s *slot) conn(ctx context.Context, p *pool) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil && !s.c.isDead() {
		return s.c, nil
	}
	if s.c != nil {
		s.c.close()
		s.c = nil
		s.live.Store(nil)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.done, cancel)()
	c, err := p.dial(dctx)
	if err != nil {
		if p.closed.Load() {
			return nil, errClosed
		}
		return nil, err
	}
	if p.closed.Load() {
		c.close()
		return nil, errClosed
	}
	s.c = c
	s.live.Store(c)
	return c, nil
}

func (p *pool) close() {
	p.closed.Store(true)
	p.cancel()
	for _, s := range p.slots {
		s.mu.Lock()
		if s.c != nil {
			s.c.close()
			s.c = nil
			s.live.Store(nil)
		}
		s.mu.Unlock()
	}
}
