package sftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Check is one line of a doctor report.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// doctorSessions is how many parallel sessions Doctor tries to open; a
// Storage Box allows about 10 per account.
const doctorSessions = 10

// doctorThroughputBytes is the size of the throughput probe.
const doctorThroughputBytes = 16 << 20

// Doctor checks an SFTP repository location end to end before the first
// backup: host key, authentication, the SFTP extensions, the repository
// directory, a write/fsync/rename/read/remove probe, free space, how many
// parallel sessions the server accepts, round-trip time and throughput.
// report is called once per check, in order, from the calling goroutine.
// Doctor creates cfg.Path if it is missing (as init would) and removes its
// probe files. It returns an error if any check failed; when host key or
// authentication fail it stops there.
func Doctor(ctx context.Context, cfg Config, report func(Check)) error {
	var failed []string
	emit := func(c Check) {
		if !c.OK {
			failed = append(failed, c.Name)
		}
		report(c)
	}
	done := func() error {
		if len(failed) > 0 {
			return fmt.Errorf("doctor: %d check(s) failed: %s", len(failed), strings.Join(failed, ", "))
		}
		return nil
	}
	wantConns := cfg.Connections
	if wantConns == 0 {
		wantConns = DefaultConnections
	}
	cfg.Connections = 1 // Doctor opens its own parallel sessions below.
	cfg.Retry = RetryPolicy{Initial: 200 * time.Millisecond, Max: time.Second, MaxElapsed: 3 * time.Second}
	b, err := connect(ctx, cfg)
	if err != nil {
		var uh *UnknownHostError
		var hc *HostKeyChangedError
		var ae *AuthError
		switch {
		case errors.As(err, &uh), errors.As(err, &hc):
			emit(Check{Name: "host key", Detail: err.Error()})
		case errors.As(err, &ae):
			emit(hostKeyCheck(cfg, nil))
			emit(Check{Name: "authentication", Detail: err.Error()})
		default:
			emit(Check{Name: "connect", Detail: err.Error()})
		}
		return done()
	}
	defer b.Close()
	key, _ := b.keys.lastKey()
	emit(hostKeyCheck(b.cfg, key))
	s, c, err := b.pool.get(ctx)
	if err != nil {
		emit(Check{Name: "connect", Detail: err.Error()})
		return done()
	}
	defer b.pool.put(s)
	emit(Check{Name: "authentication", OK: true, Detail: fmt.Sprintf("%s@%s accepted %s", b.cfg.User, b.cfg.addr(), b.authDesc)})

	var ext []string
	var missing []string
	for _, e := range []struct {
		name string
		ok   bool
	}{{"fsync@openssh.com", c.fsync}, {"posix-rename@openssh.com", c.posixRename}, {"statvfs@openssh.com", c.statvfs}} {
		if e.ok {
			ext = append(ext, e.name)
		} else {
			missing = append(missing, e.name)
		}
	}
	detail := "SFTP subsystem with " + strings.Join(ext, ", ")
	if len(missing) > 0 {
		detail += "; missing " + strings.Join(missing, ", ") + " (uploads are less durable or 'full' errors less clear)"
	}
	emit(Check{Name: "sftp", OK: true, Detail: detail})
	emit(readSessionCheck(c))

	emit(repoDirCheck(b, c))
	for _, ch := range probeChecks(ctx, b, c) {
		emit(ch)
	}
	emit(spaceCheck(ctx, b))
	emit(sessionsCheck(ctx, b, wantConns))
	emit(rttCheck(b, c))
	emit(throughputCheck(ctx, b))
	return done()
}

func hostKeyCheck(cfg Config, key ssh.PublicKey) Check {
	if key == nil {
		return Check{Name: "host key", OK: true, Detail: "verified against " + cfg.KnownHostsFile}
	}
	return Check{Name: "host key", OK: true, Detail: fmt.Sprintf("%s %s matches %s", key.Type(), ssh.FingerprintSHA256(key), cfg.KnownHostsFile)}
}

func repoDirCheck(b *Backend, c *conn) Check {
	ch := Check{Name: "repository directory"}
	fi, err := c.sftp.Stat(b.root)
	switch {
	case err == nil && !fi.IsDir():
		ch.Detail = b.root + " exists but is not a directory"
		return ch
	case err == nil:
		if _, err := c.sftp.Stat(path.Join(b.root, "config")); err == nil {
			ch.Detail = b.root + " holds a repository"
		} else {
			ch.Detail = b.root + " exists (no repository yet: run 'shopvault init')"
		}
	case errors.Is(err, os.ErrNotExist):
		if err := c.sftp.MkdirAll(b.root); err != nil {
			ch.Detail = fmt.Sprintf("cannot create %s: %v", b.root, err)
			return ch
		}
		ch.Detail = b.root + " created (no repository yet: run 'shopvault init')"
	default:
		ch.Detail = fmt.Sprintf("stat %s: %v", b.root, err)
		return ch
	}
	ch.OK = true
	return ch
}

// probeChecks writes a probe file the way Save does and reads it back.
func probeChecks(ctx context.Context, b *Backend, c *conn) []Check {
	var out []Check
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	name := path.Join(b.root, ".doctor-probe-"+randomSuffix())
	tmp := name + ".tmp"
	defer func() {
		_ = c.sftp.Remove(tmp)
		_ = c.sftp.Remove(name)
	}()
	f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err == nil {
		_, err = f.ReadFromWithConcurrency(bytes.NewReader(data), maxRequestsPerFile)
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		return append(out, Check{Name: "write", Detail: fmt.Sprintf("write %s: %v", tmp, b.writeError(c, "write probe", err, int64(len(data))))})
	}
	out = append(out, Check{Name: "write", OK: true, Detail: "wrote a 1 MiB probe file"})
	switch {
	case !c.fsync:
		out = append(out, Check{Name: "fsync", OK: true, Detail: "server lacks fsync@openssh.com: uploads are renamed without a flush"})
	default:
		if err := f.Sync(); err != nil {
			out = append(out, Check{Name: "fsync", Detail: err.Error()})
		} else {
			out = append(out, Check{Name: "fsync", OK: true, Detail: "fsync@openssh.com works"})
		}
	}
	if err := f.Close(); err != nil {
		return append(out, Check{Name: "write", Detail: fmt.Sprintf("close %s: %v", tmp, err)})
	}
	rename, how := c.sftp.Rename, "rename"
	if c.posixRename {
		rename, how = c.sftp.PosixRename, "posix-rename@openssh.com"
	}
	if err := rename(tmp, name); err != nil {
		return append(out, Check{Name: "rename", Detail: fmt.Sprintf("%s %s: %v", how, tmp, err)})
	}
	out = append(out, Check{Name: "rename", OK: true, Detail: how + " works"})
	rf, err := c.sftp.Open(name)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(rf)
		_ = rf.Close()
	}
	switch {
	case err != nil:
		out = append(out, Check{Name: "read back", Detail: err.Error()})
	case !bytes.Equal(got, data):
		out = append(out, Check{Name: "read back", Detail: fmt.Sprintf("read %d bytes that differ from the %d written", len(got), len(data))})
	default:
		out = append(out, Check{Name: "read back", OK: true, Detail: "content matches"})
	}
	if err := c.sftp.Remove(name); err != nil {
		out = append(out, Check{Name: "remove", Detail: err.Error()})
	} else {
		out = append(out, Check{Name: "remove", OK: true, Detail: "probe removed"})
	}
	return out
}

func spaceCheck(ctx context.Context, b *Backend) Check {
	free, err := b.FreeSpace(ctx)
	if err != nil {
		return Check{Name: "free space", OK: true, Detail: "unknown: " + err.Error()}
	}
	if free < 1<<30 {
		return Check{Name: "free space", Detail: fmt.Sprintf("only %s free", sizeString(free))}
	}
	return Check{Name: "free space", OK: true, Detail: sizeString(free) + " free"}
}

// sessionsCheck opens up to doctorSessions connections at once and counts
// how many the server accepts.
func sessionsCheck(ctx context.Context, b *Backend, want int) Check {
	cfg := b.cfg
	a, err := loadAuth(cfg)
	if err != nil {
		return Check{Name: "parallel sessions", Detail: err.Error()}
	}
	d := &dialer{cfg: cfg, auth: a, keys: &hostKeys{file: cfg.KnownHostsFile}}
	d.cfg.KeepAlive = -1
	var (
		mu    sync.Mutex
		conns []*conn
		errs  []string
		wg    sync.WaitGroup
	)
	// One session is already open (the doctor's own).
	for i := 1; i < doctorSessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.dial(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	n := len(conns) + 1
	for _, c := range conns {
		c.close()
	}
	detail := fmt.Sprintf("the server accepted %d of %d parallel sessions; --connections is %d", n, doctorSessions, want)
	if len(errs) > 0 {
		sort.Strings(errs)
		detail += " (first refusal: " + errs[0] + ")"
	}
	return Check{Name: "parallel sessions", OK: n >= want, Detail: detail}
}

// readSessionCheck reports whether restores get their second, read-only
// SFTP channel (rawread.go); without it they read through pkg/sftp.
func readSessionCheck(c *conn) Check {
	rs := c.rawReader()
	if rs == nil {
		return Check{Name: "read session", OK: true, Detail: "the server refused a second SFTP channel on the connection: restores read through the main session (more CPU per byte)"}
	}
	return Check{Name: "read session", OK: true, Detail: fmt.Sprintf("second SFTP channel for restores' reads, %d KiB per read request", rs.readSize>>10)}
}

func rttCheck(b *Backend, c *conn) Check {
	const n = 5
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := b.cfg.Now()
		if _, err := c.sftp.Stat(b.root); err != nil {
			return Check{Name: "round trip", Detail: err.Error()}
		}
		ds = append(ds, b.cfg.Now().Sub(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return Check{Name: "round trip", OK: true, Detail: fmt.Sprintf("median %s over %d requests", ds[n/2].Round(10*time.Microsecond), n)}
}

func throughputCheck(ctx context.Context, b *Backend) Check {
	data := make([]byte, doctorThroughputBytes)
	_, _ = rand.Read(data)
	h := path.Join(b.root, ".doctor-throughput-"+randomSuffix())
	s, c, err := b.pool.get(ctx)
	if err != nil {
		return Check{Name: "throughput", Detail: err.Error()}
	}
	defer b.pool.put(s)
	defer func() { _ = c.sftp.Remove(h) }()
	start := b.cfg.Now()
	f, err := c.sftp.OpenFile(h, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err == nil {
		src := &sourceReader{ctx: ctx, r: bytes.NewReader(data), limit: b.up}
		_, err = f.ReadFromWithConcurrency(src, maxRequestsPerFile)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return Check{Name: "throughput", Detail: "upload: " + err.Error()}
	}
	up := b.cfg.Now().Sub(start)
	start = b.cfg.Now()
	var n int64
	if rs := c.rawReader(); rs != nil {
		// the way restores read
		err = b.loadRaw(ctx, c, rs, "read "+h, h, 0, 0, func(r io.Reader) (err error) {
			n, err = io.Copy(io.Discard, r)
			return err
		})
	} else {
		var rf *pkgsftp.File
		if rf, err = c.sftp.Open(h); err == nil {
			n, err = rf.WriteTo(io.Discard)
			_ = rf.Close()
		}
	}
	if err == nil && n != int64(len(data)) {
		err = fmt.Errorf("read %d bytes, wrote %d", n, len(data))
	}
	if err != nil {
		return Check{Name: "throughput", Detail: "download: " + err.Error()}
	}
	down := b.cfg.Now().Sub(start)
	return Check{Name: "throughput", OK: true, Detail: fmt.Sprintf("one session: upload %s, download %s (%d MiB)", rate(len(data), up), rate(len(data), down), len(data)>>20)}
}

func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/d.Seconds()/1e6)
}
