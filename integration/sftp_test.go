package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/integration/sshdtest"
)

// sftpConfig returns a Config for the directory dir (under s.Root) that
// trusts s's host key and logs in with its client key.
func sftpConfig(t testing.TB, s *sshdtest.Server, dir string) sftp.Config {
	t.Helper()
	cfg, err := sftp.ParseURL(s.URL(filepath.Join(s.Root, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = s.ClientKeyPath
	cfg.KnownHostsFile = s.KnownHostsPath
	cfg.Retry = sftp.RetryPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, MaxElapsed: 30 * time.Second}
	return cfg
}

func sftpRandom(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func TestSFTPUnknownHostRefusedThenAccepted(t *testing.T) {
	s := sshdtest.Start(t)
	ctx := t.Context()
	cfg := sftpConfig(t, s, "repo")
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "ssh", "known_hosts") // does not exist yet

	_, err := sftp.Create(ctx, cfg)
	var uh *sftp.UnknownHostError
	if !errors.As(err, &uh) {
		t.Fatalf("unknown host: got %v, want *UnknownHostError", err)
	}
	if !errors.Is(err, backend.ErrPermanent) {
		t.Errorf("unknown host error is not permanent: %v", err)
	}
	if uh.Fingerprint != s.HostKeyFingerprint {
		t.Fatalf("reported fingerprint %s, server's is %s", uh.Fingerprint, s.HostKeyFingerprint)
	}
	if want := "--accept-host-key " + s.HostKeyFingerprint; !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q does not contain %q", err, want)
	}
	if _, err := os.Stat(cfg.KnownHostsFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused host was recorded: %v", err)
	}

	// A different fingerprint is not enough.
	wrong := cfg
	wrong.AcceptHostKey = "SHA256:" + strings.Repeat("A", 43)
	if _, err := sftp.Create(ctx, wrong); err == nil || !strings.Contains(err.Error(), s.HostKeyFingerprint) {
		t.Fatalf("accepting the wrong fingerprint: got %v", err)
	}

	accepted := cfg
	accepted.AcceptHostKey = s.HostKeyFingerprint
	be, err := sftp.Create(ctx, accepted)
	if err != nil {
		t.Fatalf("create with the accepted fingerprint: %v", err)
	}
	data, _ := sftpRandom(t, 1000)
	if err := be.Save(ctx, backend.Handle{Type: backend.ConfigFile}, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	_ = be.Close()
	kh, err := os.ReadFile(cfg.KnownHostsFile)
	if err != nil {
		t.Fatalf("the accepted key was not recorded: %v", err)
	}
	if want := strings.TrimSpace(s.KnownHostsLine()); !strings.Contains(string(kh), want) {
		t.Fatalf("known_hosts %q does not hold %q", kh, want)
	}
	// The second Open needs no flag.
	be, err = sftp.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open after recording the host key: %v", err)
	}
	_ = be.Close()
}

func TestSFTPChangedHostKeyRefused(t *testing.T) {
	s := sshdtest.Start(t)
	ctx := t.Context()
	cfg := sftpConfig(t, s, "repo")
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = be.Close()
	old := s.HostKeyFingerprint
	s.ChangeHostKey(t)

	_, err = sftp.Open(ctx, cfg)
	var hc *sftp.HostKeyChangedError
	if !errors.As(err, &hc) {
		t.Fatalf("changed host key: got %v, want *HostKeyChangedError", err)
	}
	if hc.Fingerprint != s.HostKeyFingerprint || !strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "CHANGED") {
		t.Fatalf("message does not name the new key %s and the old %s loudly: %v", s.HostKeyFingerprint, old, err)
	}
	// Accepting the new fingerprint does not override a recorded key.
	cfg.AcceptHostKey = s.HostKeyFingerprint
	if _, err := sftp.Open(ctx, cfg); !errors.As(err, &hc) {
		t.Fatalf("changed host key with --accept-host-key: got %v, want *HostKeyChangedError", err)
	}
}

func TestSFTPWrongClientKeyRefused(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := sftpConfig(t, s, "repo")
	cfg.KeyFile = filepath.Join(t.TempDir(), "id_other")
	pub, err := sshdtest.WriteClientKey(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sftp.Create(t.Context(), cfg)
	var ae *sftp.AuthError
	if !errors.As(err, &ae) || !errors.Is(err, backend.ErrPermanent) {
		t.Fatalf("wrong key: got %v, want a permanent *AuthError", err)
	}
	for _, want := range []string{cfg.KeyFile, ssh.FingerprintSHA256(pub), "authorized_keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
}

func TestSFTPKeyFileModeRefused(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := sftpConfig(t, s, "repo")
	key, err := os.ReadFile(s.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyFile = filepath.Join(t.TempDir(), "id_open")
	if err := os.WriteFile(cfg.KeyFile, key, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg.KeyFile, 0o644); err != nil { // beat the umask
		t.Fatal(err)
	}
	_, err = sftp.Create(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+cfg.KeyFile) {
		t.Fatalf("0644 key file: got %v, want a refusal that says chmod 600", err)
	}
	if err := os.Chmod(cfg.KeyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	be, err := sftp.Create(t.Context(), cfg)
	if err != nil {
		t.Fatalf("after chmod 600: %v", err)
	}
	_ = be.Close()
}

func TestSFTPPassphraseKeyAndAgent(t *testing.T) {
	s := sshdtest.Start(t)
	ctx := t.Context()
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	s.AuthorizeKey(t, sshPub)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "enc", []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_enc")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sftpConfig(t, s, "repo")
	cfg.KeyFile = keyFile
	if _, err := sftp.Create(ctx, cfg); err == nil || !strings.Contains(err.Error(), "--ssh-passphrase-file") {
		t.Fatalf("encrypted key without passphrase: got %v", err)
	}
	cfg.KeyPassphraseFile = filepath.Join(dir, "pass")
	if err := os.WriteFile(cfg.KeyPassphraseFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sftp.Create(ctx, cfg); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: got %v", err)
	}
	if err := os.WriteFile(cfg.KeyPassphraseFile, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("encrypted key with passphrase file: %v", err)
	}
	_ = be.Close()

	// The same key through an ssh-agent socket.
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(kr, c); _ = c.Close() }()
		}
	}()
	acfg := sftpConfig(t, s, "repo-agent")
	acfg.KeyFile = ""
	acfg.AgentSocket = sock
	be, err = sftp.Create(ctx, acfg)
	if err != nil {
		t.Fatalf("open with ssh-agent: %v", err)
	}
	_ = be.Close()
}

// The server is killed and restarted while large saves and loads run: every
// operation completes over new connections, with the right content.
func TestSFTPReconnectDuringTransfers(t *testing.T) {
	s := sshdtest.Start(t)
	ctx := t.Context()
	cfg := sftpConfig(t, s, "repo")
	cfg.Connections = 3
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()

	const files, size = 16, 4 << 20
	type item struct {
		h    backend.Handle
		data []byte
	}
	items := make([]item, files)
	for i := range items {
		data, name := sftpRandom(t, size+i)
		items[i] = item{backend.Handle{Type: backend.PackFile, Name: name}, data}
	}
	progress := make(chan struct{}, files*2)
	var wg sync.WaitGroup
	errs := make(chan error, files)
	work := make(chan item)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := be.Save(ctx, it.h, bytes.NewReader(it.data), int64(len(it.data))); err != nil {
					errs <- fmt.Errorf("save %s: %w", it.h, err)
					continue
				}
				progress <- struct{}{}
				err := be.Load(ctx, it.h, 0, 0, func(r io.Reader) error {
					got, err := io.ReadAll(r)
					if err == nil && !bytes.Equal(got, it.data) {
						err = fmt.Errorf("content differs (%d bytes, want %d)", len(got), len(it.data))
					}
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("load %s: %w", it.h, err)
				}
				progress <- struct{}{}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, it := range items {
			select {
			case work <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Kill once a few operations are done, so others are in flight;
	// keep the server down long enough for reconnects to be refused.
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	waitFor := func(n int) {
		for i := 0; i < n; i++ {
			select {
			case <-progress:
			case <-workersDone:
				return
			case <-time.After(2 * time.Minute):
				t.Fatal("no save or load finished for 2 minutes")
			}
		}
	}
	waitFor(4)
	s.Kill()
	time.Sleep(700 * time.Millisecond)
	s.Restart(t)
	waitFor(6)
	s.Kill()
	s.Restart(t)
	<-workersDone // progress is buffered for every event
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Compare with what is on the server's disk, and that no temp file is listed.
	n := 0
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != files {
		t.Fatalf("listed %d packs, want %d", n, files)
	}
	for _, it := range items {
		p := filepath.Join(cfg.Path, backend.Path(it.h))
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, it.data) {
			t.Fatalf("%s on the server: %d bytes, err %v, content equal %v", p, len(got), err, bytes.Equal(got, it.data))
		}
	}
	// Temporary files of interrupted uploads were removed by the retries.
	if left, _ := filepath.Glob(filepath.Join(cfg.Path, "data", "*", sftp.TempPrefix+"*")); len(left) != 0 {
		t.Errorf("interrupted uploads left %d temporary files: %v", len(left), left)
	}
	if c := strings.Count(s.Log(), "Accepted publickey"); c <= cfg.Connections {
		t.Fatalf("sshd saw %d logins; the test did not force reconnects", c)
	}
}

// mountTmpfs mounts a tmpfs of size at dir, or skips when mounting is not
// permitted (it is on CI runners as root). Unmounted at cleanup.
func mountTmpfs(t *testing.T, dir, opts string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (%v: %s); run as root with CAP_SYS_ADMIN for the disk-full test", err, out)
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

func TestSFTPDiskFull(t *testing.T) {
	s := sshdtest.Start(t)
	full := filepath.Join(s.Root, "box")
	mountTmpfs(t, full, "size=2m,mode=0755")
	cfg := sftpConfig(t, s, "box/repo")
	// If a full disk were retried, this test would hit its deadline.
	cfg.Retry.MaxElapsed = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	small, smallName := sftpRandom(t, 512<<10)
	if err := be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: smallName}, bytes.NewReader(small), int64(len(small))); err != nil {
		t.Fatalf("a 512 KiB save into 2 MiB: %v", err)
	}
	big, bigName := sftpRandom(t, 3<<20)
	h := backend.Handle{Type: backend.PackFile, Name: bigName}
	err = be.Save(ctx, h, bytes.NewReader(big), int64(len(big)))
	if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, backend.ErrPermanent) {
		t.Fatalf("save of 3 MiB into a 2 MiB filesystem: got %v, want a permanent ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "is full (") || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("message %q does not say the storage is full and how much is free", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the disk-full error was retried until the deadline")
	}
	var names []string
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != smallName {
		t.Fatalf("after the failed save the repository lists %v, want only %s", names, smallName)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Path, "data", "*", ".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
	// The space check before a backup gives the same clear error.
	if err := be.CheckSpace(ctx, 10<<30); !errors.Is(err, backend.ErrNoSpace) || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("CheckSpace(10 GiB) on a 2 MiB filesystem: %v", err)
	}
	free, err := be.FreeSpace(ctx)
	if err != nil || free == 0 || free > 2<<20 {
		t.Fatalf("FreeSpace = %d, %v; want between 1 and 2 MiB", free, err)
	}
}

func TestSFTPReadOnlyStorage(t *testing.T) {
	s := sshdtest.Start(t)
	ro := filepath.Join(s.Root, "ro")
	mountTmpfs(t, ro, "size=1m,mode=0755")
	cfg := sftpConfig(t, s, "ro/repo")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	be, err := sftp.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if out, err := exec.Command("mount", "-o", "remount,ro", ro).CombinedOutput(); err != nil {
		t.Skipf("cannot remount read-only: %v: %s", err, out)
	}
	cfg.Retry.MaxElapsed = time.Hour
	data, name := sftpRandom(t, 1000)
	err = be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: name}, bytes.NewReader(data), int64(len(data)))
	if err == nil || !errors.Is(err, backend.ErrPermanent) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("save to a read-only filesystem: got %v, want a permanent read-only error", err)
	}
}

func TestSFTPDoctor(t *testing.T) {
	s := sshdtest.Start(t)
	cfg := sftpConfig(t, s, "doctor/repo")
	cfg.Connections = 4
	var checks []sftp.Check
	err := sftp.Doctor(t.Context(), cfg, func(c sftp.Check) { checks = append(checks, c) })
	got := map[string]sftp.Check{}
	for _, c := range checks {
		got[c.Name] = c
		t.Logf("%-20s ok=%v %s", c.Name, c.OK, c.Detail)
	}
	if err != nil {
		t.Fatalf("doctor against a healthy sshd: %v", err)
	}
	for _, name := range []string{"host key", "authentication", "sftp", "read session", "repository directory", "write", "fsync", "rename", "read back", "remove", "free space", "parallel sessions", "round trip", "throughput"} {
		c, ok := got[name]
		if !ok || !c.OK {
			t.Errorf("check %q: %+v (present %v)", name, c, ok)
		}
	}
	if !strings.Contains(got["host key"].Detail, s.HostKeyFingerprint) {
		t.Errorf("host key detail %q lacks the fingerprint", got["host key"].Detail)
	}
	if !strings.Contains(got["sftp"].Detail, "fsync@openssh.com") || !strings.Contains(got["sftp"].Detail, "statvfs@openssh.com") {
		t.Errorf("sftp detail %q lacks OpenSSH's extensions", got["sftp"].Detail)
	}
	if !strings.Contains(got["read session"].Detail, "255 KiB per read") {
		t.Errorf("read session: %q, want OpenSSH's 255 KiB reads (limits@openssh.com)", got["read session"].Detail)
	}
	if !strings.Contains(got["parallel sessions"].Detail, "accepted 10 of 10") {
		t.Errorf("parallel sessions: %q, want all 10 accepted by our sshd", got["parallel sessions"].Detail)
	}
	probes, _ := filepath.Glob(filepath.Join(cfg.Path, ".doctor-*"))
	if len(probes) != 0 {
		t.Errorf("doctor left probe files: %v", probes)
	}

	// An unknown host stops doctor at the host key line.
	checks = nil
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	err = sftp.Doctor(t.Context(), cfg, func(c sftp.Check) { checks = append(checks, c) })
	if err == nil || len(checks) != 1 || checks[0].Name != "host key" || checks[0].OK || !strings.Contains(checks[0].Detail, s.HostKeyFingerprint) {
		t.Fatalf("doctor with an unknown host: err %v, checks %+v", err, checks)
	}
}

// A server that refuses writes (sftp-server in read-only mode answers
// SSH_FX_PERMISSION_DENIED) gives a permanent error at once; reads work.
func TestSFTPPermissionDenied(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.WithConfig("ForceCommand internal-sftp -R"))
	cfg := sftpConfig(t, s, "repo")
	cfg.Retry.MaxElapsed = time.Hour // a retried refusal would hit the test's deadline
	if err := os.MkdirAll(filepath.Join(cfg.Path, "snapshots"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Path, "config"), []byte("cfg"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	be, err := sftp.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	got, err := backend.LoadAll(ctx, be, backend.Handle{Type: backend.ConfigFile})
	if err != nil || string(got) != "cfg" {
		t.Fatalf("read from a read-only server: %q, %v", got, err)
	}
	data, name := sftpRandom(t, 100)
	err = be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: name}, bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, backend.ErrPermanent) || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("save to a server that refuses writes: got %v, want a permanent permission error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the permission error was retried until the deadline")
	}
	err = be.Remove(ctx, backend.Handle{Type: backend.ConfigFile})
	if !errors.Is(err, backend.ErrPermanent) {
		t.Fatalf("remove on a server that refuses writes: got %v, want a permanent error", err)
	}
}
