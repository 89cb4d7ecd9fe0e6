package sftp

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func newEd25519(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHostKeys(t *testing.T) {
	const addr = "box.example.com:23"
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 23}
	file := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	key := newEd25519(t)
	fp := ssh.FingerprintSHA256(key)

	// Unknown, no file yet.
	hk := &hostKeys{file: file}
	err := hk.check(addr, remote, key)
	var uh *UnknownHostError
	if !errors.As(err, &uh) || uh.Fingerprint != fp || !strings.Contains(err.Error(), "--accept-host-key "+fp) {
		t.Fatalf("unknown host: %v", err)
	}
	if algos := hk.algorithms(addr, remote); algos != nil {
		t.Fatalf("algorithms for an unknown host: %v", algos)
	}

	// Accepted by fingerprint: passes, and is recorded only by record.
	hk = &hostKeys{file: file, accept: fp}
	if err := hk.check(addr, remote, key); err != nil {
		t.Fatalf("accepted key: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the key was recorded before authentication succeeded: %v", err)
	}
	if err := hk.record(addr); err != nil {
		t.Fatal(err)
	}
	if err := hk.record(addr); err != nil { // nothing pending: no second line
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := knownhosts.Line([]string{"[box.example.com]:23"}, key) + "\n"; string(b) != want {
		t.Fatalf("known_hosts = %q, want %q", b, want)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts mode %v", fi.Mode())
	}

	// Known now, without any flag; the same key on another port is unknown.
	hk = &hostKeys{file: file}
	if err := hk.check(addr, remote, key); err != nil {
		t.Fatalf("recorded key: %v", err)
	}
	if err := hk.check("box.example.com:22", remote, key); !errors.As(err, &uh) {
		t.Fatalf("same key on port 22: %v", err)
	}
	if algos := hk.algorithms(addr, remote); len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("algorithms = %v, want [ssh-ed25519]", algos)
	}

	// Changed: refused, also when the new fingerprint is "accepted".
	other := newEd25519(t)
	for _, accept := range []string{"", ssh.FingerprintSHA256(other)} {
		hk = &hostKeys{file: file, accept: accept}
		err = hk.check(addr, remote, other)
		var hc *HostKeyChangedError
		if !errors.As(err, &hc) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(other)) {
			t.Fatalf("changed key (accept %q): %v", accept, err)
		}
	}

	// A recorded RSA key asks for the RSA signature algorithms first.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rpub, err := ssh.NewPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(knownhosts.Line([]string{"[rsa.example.com]:2222"}, rpub) + "\n")
	_ = f.Close()
	hk = &hostKeys{file: file}
	if algos := hk.algorithms("rsa.example.com:2222", remote); strings.Join(algos, ",") != "rsa-sha2-512,rsa-sha2-256,ssh-rsa" {
		t.Fatalf("algorithms for an RSA host = %v", algos)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"sftp://u123456@u123456.your-storagebox.de/shopvault",
		"sftp://root@127.0.0.1:2222/a/b",
		"sftp://me@[::1]:22/~/repo",
		"sftp://u@h:0/x", "sftp://u:p@h/x", "sftp:u@h/x", "/local/path", "sftp://u@h/%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseURL(s)
		if err != nil {
			return
		}
		if cfg.User == "" || cfg.Host == "" || cfg.Path == "" || cfg.Port < 1 || cfg.Port > 65535 {
			t.Fatalf("ParseURL(%q) accepted an incomplete config %+v", s, cfg)
		}
		if cfg.Path == "/" || cfg.Path == "." || cfg.Path == ".." || strings.HasPrefix(cfg.Path, "../") {
			t.Fatalf("ParseURL(%q) accepted path %q outside any repository directory", s, cfg.Path)
		}
		again, err := ParseURL(cfg.Location())
		if err != nil {
			t.Fatalf("Location %q of ParseURL(%q) does not parse: %v", cfg.Location(), s, err)
		}
		if again.User != cfg.User || again.Host != cfg.Host || again.Port != cfg.Port || again.Path != cfg.Path {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, cfg)
		}
	})
}
