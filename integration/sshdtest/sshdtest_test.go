package sshdtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func dial(t *testing.T, s *Server) (*ssh.Client, error) {
	t.Helper()
	pem, err := os.ReadFile(s.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := knownhosts.New(s.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hk,
		Timeout:         5 * time.Second,
	})
}

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	if fi, err := os.Stat(s.ClientKeyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("client key %s: %v %v", s.ClientKeyPath, fi.Mode(), err)
	}
	c, err := dial(t, s)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	p := filepath.Join(s.Root, "hello")
	f, err := sc.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "hi" {
		t.Fatalf("file written over sftp: %q %v", b, err)
	}

	// Kill drops the open session, not only the listener.
	s.Kill()
	if _, err := sc.Stat(p); err == nil {
		t.Fatal("stat succeeded on a connection to a killed sshd")
	}
	_ = sc.Close()
	_ = c.Close()
	if _, err := dial(t, s); err == nil {
		t.Fatal("dial succeeded to a killed sshd")
	}

	s.Restart(t)
	c, err = dial(t, s)
	if err != nil {
		t.Fatalf("dial after restart: %v", err)
	}
	_ = c.Close()

	old := s.HostKeyFingerprint
	s.ChangeHostKey(t)
	if s.HostKeyFingerprint == old {
		t.Fatal("host key fingerprint unchanged")
	}
	_, err = dial(t, s)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		t.Fatalf("dial with a changed host key: got %v, want a knownhosts key mismatch", err)
	}
}
