package sftp

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/shopvault/shopvault/backend"
)

// AuthError is returned when the server refuses every key offered.
type AuthError struct {
	User, Host string
	Keys       string // what was offered, e.g. "key /root/.ssh/id_ed25519 (SHA256:...)"
	Err        error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("authentication as %s at %s failed: the server accepted none of: %s; "+
		"add the public key to the server's authorized_keys (Storage Box: see Hetzner's 'install-ssh-key'), or give the right one with --ssh-key (%v)",
		e.User, e.Host, e.Keys, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// auth describes how to authenticate; signers are loaded once at Open.
type auth struct {
	signers []ssh.Signer
	agent   string // socket path, used when signers is empty
	desc    string
}

// loadAuth reads the key file (checking its mode) or prepares the agent.
func loadAuth(cfg Config) (*auth, error) {
	if cfg.KeyFile != "" {
		s, err := loadKey(cfg.KeyFile, cfg.KeyPassphraseFile)
		if err != nil {
			return nil, err
		}
		return &auth{signers: []ssh.Signer{s}, desc: describeKey(cfg.KeyFile, s)}, nil
	}
	sock := cfg.AgentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		return &auth{agent: sock, desc: "keys of ssh-agent at " + sock}, nil
	}
	home, err := os.UserHomeDir()
	if err == nil {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := filepath.Join(home, ".ssh", n)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			s, err := loadKey(p, cfg.KeyPassphraseFile)
			if err != nil {
				return nil, err
			}
			return &auth{signers: []ssh.Signer{s}, desc: describeKey(p, s)}, nil
		}
	}
	return nil, backend.Permanent(errors.New("no SSH key: give one with --ssh-key, or start ssh-agent and set SSH_AUTH_SOCK"))
}

func describeKey(path string, s ssh.Signer) string {
	return fmt.Sprintf("key %s (%s %s)", path, s.PublicKey().Type(), ssh.FingerprintSHA256(s.PublicKey()))
}

// checkPrivate refuses a secret file that group or others can read.
func checkPrivate(what, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, backend.Permanent(fmt.Errorf("%s %s: %w", what, path, err))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, backend.Permanent(fmt.Errorf("%s %s has mode %04o and is readable by other users: run 'chmod 600 %s'", what, path, perm, path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, backend.Permanent(fmt.Errorf("%s %s: %w", what, path, err))
	}
	return b, nil
}

func loadKey(path, passFile string) (ssh.Signer, error) {
	pem, err := checkPrivate("private key", path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passFile == "" {
			return nil, backend.Permanent(fmt.Errorf("private key %s is protected by a passphrase: put the passphrase in a file (mode 0600) and give it with --ssh-passphrase-file, or load the key into ssh-agent", path))
		}
		pass, err := checkPrivate("passphrase file", passFile)
		if err != nil {
			return nil, err
		}
		s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(strings.TrimRight(string(pass), "\r\n")))
		if err != nil {
			return nil, backend.Permanent(fmt.Errorf("private key %s: wrong passphrase in %s or unreadable key: %w", path, passFile, err))
		}
		return s, nil
	}
	if err != nil {
		return nil, backend.Permanent(fmt.Errorf("private key %s is not an OpenSSH/PEM private key: %w", path, err))
	}
	return s, nil
}

// methods returns the auth methods for one handshake and a function that
// releases what they hold (the agent connection).
func (a *auth) methods() ([]ssh.AuthMethod, func(), error) {
	if len(a.signers) > 0 {
		return []ssh.AuthMethod{ssh.PublicKeys(a.signers...)}, func() {}, nil
	}
	c, err := net.Dial("unix", a.agent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, backend.Permanent(fmt.Errorf("ssh-agent socket %s does not exist: start ssh-agent or give --ssh-key", a.agent))
		}
		return nil, nil, fmt.Errorf("connect to ssh-agent %s: %w", a.agent, err)
	}
	ag := agent.NewClient(c)
	return []ssh.AuthMethod{ssh.PublicKeysCallback(ag.Signers)}, func() { _ = c.Close() }, nil
}
