package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopvault/shopvault/integration/sshdtest"
)

// sftpCLI runs the shopvault binary against a repository on an sshd.
type sftpCLI struct {
	bin  string
	env  []string
	repo string // on-disk path of the repository on the server
}

// buildShopvault builds cmd/shopvault into a temporary directory.
func buildShopvault(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shopvault")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/shopvault/shopvault/cmd/shopvault")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shopvault: %v\n%s", err, out)
	}
	return bin
}

func newSFTPCLI(t *testing.T, s *sshdtest.Server) *sftpCLI {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(s.Root, "repo")
	return &sftpCLI{
		bin:  buildShopvault(t),
		repo: repo,
		env: append(os.Environ(),
			"SHOPVAULT_CONFIG="+filepath.Join(dir, "none.toml"),
			"SHOPVAULT_REPO="+s.URL(repo),
			"SHOPVAULT_KNOWN_HOSTS="+s.KnownHostsPath,
			"SHOPVAULT_SSH_KEY="+s.ClientKeyPath,
			"SHOPVAULT_HOST_KEY="+filepath.Join(dir, "host.key"),
			"SHOPVAULT_RESTORE_KEY="+filepath.Join(dir, "restore.key"),
			"SHOPVAULT_CACHE_DIR="+filepath.Join(dir, "cache"),
		),
	}
}

func (c *sftpCLI) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	return cmd
}

// run runs shopvault and fails the test on a non-zero exit.
func (c *sftpCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shopvault %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func (c *sftpCLI) snapshotCount(t *testing.T) int {
	t.Helper()
	out := c.run(t, "snapshots", "--json")
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, out)
	}
	return len(list)
}

func writeRandomFile(t *testing.T, p string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// Backup over SFTP, list, verify every byte; then kill and restart sshd in
// the middle of a large backup: the backup completes, or fails cleanly and
// the next one completes; check --read-data passes either way, and a
// restore over SFTP gives back the source byte for byte.
func TestSFTPEndToEndBackupSurvivesServerRestart(t *testing.T) {
	s := sshdtest.Start(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not found to build shopvault")
	}
	cli := newSFTPCLI(t, s)
	cli.run(t, "init")

	src := filepath.Join(t.TempDir(), "shop")
	writeRandomFile(t, filepath.Join(src, "img", "p1.jpg"), 3<<20)
	for i := 0; i < 20; i++ {
		if err := os.MkdirAll(filepath.Join(src, "modules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "modules", "m"+string(rune('a'+i))+".php"), bytes.Repeat([]byte("<?php echo 1;\n"), 100+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cli.run(t, "backup", src)
	if n := cli.snapshotCount(t); n != 1 {
		t.Fatalf("%d snapshots after one backup", n)
	}
	cli.run(t, "check", "--read-data")

	// A large backup (fresh random data, so every byte is uploaded).
	for i := 0; i < 6; i++ {
		writeRandomFile(t, filepath.Join(src, "big", "f"+string(rune('0'+i))), 16<<20)
	}
	packsBefore := countFiles(filepath.Join(cli.repo, "data"))
	var out bytes.Buffer
	cmd := cli.command("backup", src)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill the server once the backup has uploaded something.
	deadline := time.Now().Add(2 * time.Minute)
	killed := false
	for !killed && time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			deadline = time.Now() // finished before we could kill it
			continue
		default:
		}
		if countFiles(filepath.Join(cli.repo, "data")) > packsBefore {
			s.Kill()
			killed = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !killed {
		t.Fatalf("the backup finished or stalled before any pack was uploaded; cannot test a restart\n%s", out.String())
	}
	time.Sleep(500 * time.Millisecond)
	s.Restart(t)
	err := <-exited
	t.Logf("backup across the sshd restart: %v\n%s", err, out.String())
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		// Failed cleanly: the next backup must complete.
		cli.run(t, "unlock")
		cli.run(t, "backup", src)
	}
	if n := cli.snapshotCount(t); n != 2 {
		t.Fatalf("%d snapshots after the second backup completed, want 2", n)
	}
	cli.run(t, "check", "--read-data")
	cli.restoreAndCompare(t, src)
}

// restoreAndCompare restores the latest snapshot over SFTP and compares it
// byte for byte with src.
func (c *sftpCLI) restoreAndCompare(t *testing.T, src string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restored")
	c.run(t, "restore", "latest", "--target", target)
	got := filepath.Join(target, src)
	if _, err := os.Stat(got); err != nil {
		got = filepath.Join(target, filepath.Base(src))
	}
	want := map[string][]byte{}
	_ = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(src, p)
			want[rel] = b
		}
		return nil
	})
	n := 0
	err := filepath.WalkDir(got, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(got, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, ok := want[rel]
		if !ok || !bytes.Equal(b, w) {
			t.Errorf("restored %s: in source %v, identical %v", rel, ok, bytes.Equal(b, w))
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) || n == 0 {
		t.Fatalf("restored %d files under %s, the source has %d", n, got, len(want))
	}
	t.Logf("restored %d files over SFTP, byte-identical", n)
}

// The CLI prints the fingerprint and the exact flag for an unknown host,
// records the key once accepted, and doctor reports a healthy server.
func TestSFTPCLIUnknownHostAndDoctor(t *testing.T) {
	s := sshdtest.Start(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not found to build shopvault")
	}
	cli := newSFTPCLI(t, s)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	cli.env = append(cli.env, "SHOPVAULT_KNOWN_HOSTS="+kh)

	var out bytes.Buffer
	cmd := cli.command("init")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("init against an unknown host: %v\n%s", err, out.String())
	}
	t.Logf("init against an unknown host:\n%s", out.String())
	if want := "--accept-host-key " + s.HostKeyFingerprint; !strings.Contains(out.String(), want) {
		t.Fatalf("init output does not tell the user %q:\n%s", want, out.String())
	}
	cli.run(t, "init", "--accept-host-key", s.HostKeyFingerprint)
	if b, err := os.ReadFile(kh); err != nil || !strings.Contains(string(b), strings.TrimSpace(s.KnownHostsLine())) {
		t.Fatalf("known_hosts after accepting: %q, %v", b, err)
	}
	report := cli.run(t, "doctor")
	for _, want := range []string{"host key", "authentication", "fsync", "rename", "free space", "parallel sessions", "throughput"} {
		if !strings.Contains(report, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "FAIL") {
		t.Errorf("doctor reports a failure against a healthy sshd:\n%s", report)
	}
}

// A backup that fills the server's disk stops with a clear error and leaves
// no snapshot.
func TestSFTPCLIBackupDiskFull(t *testing.T) {
	s := sshdtest.Start(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not found to build shopvault")
	}
	mountTmpfs(t, filepath.Join(s.Root, "repo"), "size=4m,mode=0755")
	cli := newSFTPCLI(t, s)
	cli.run(t, "init")
	src := filepath.Join(t.TempDir(), "shop")
	for i := 0; i < 3; i++ {
		writeRandomFile(t, filepath.Join(src, "img", "big"+string(rune('0'+i))), 4<<20)
	}
	var out bytes.Buffer
	cmd := cli.command("backup", src)
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	go func() { done <- cmd.Run() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("backup into a full disk did not stop (retrying forever?)\n%s", out.String())
	}
	t.Logf("backup into a 4 MiB filesystem: %v\n%s", err, out.String())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("backup into a full disk exited %v", err)
	}
	if !strings.Contains(out.String(), "is full") {
		t.Fatalf("the error does not say the storage is full:\n%s", out.String())
	}
	if n := cli.snapshotCount(t); n != 0 {
		t.Fatalf("a failed backup left %d snapshots", n)
	}
}
