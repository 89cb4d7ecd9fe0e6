package sftp

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// UnknownHostError is returned when the server's host key is not in the
// known_hosts file and the user has not accepted its fingerprint.
type UnknownHostError struct {
	Host           string // host:port
	KeyType        string
	Fingerprint    string // SHA256:...
	KnownHostsFile string
}

func (e *UnknownHostError) Error() string {
	return fmt.Sprintf("the host key of %s is not known (%s key %s, not found in %s); "+
		"check that this fingerprint is your server's (for a Storage Box compare it with the fingerprints Hetzner publishes), "+
		"then run again with --accept-host-key %s to trust and record it",
		e.Host, e.KeyType, e.Fingerprint, e.KnownHostsFile, e.Fingerprint)
}

// HostKeyChangedError is returned when the server presents a key different
// from the one recorded for it. It is never overridden automatically.
type HostKeyChangedError struct {
	Host           string
	KeyType        string
	Fingerprint    string   // the key the server presented now
	Known          []string // "file:line (SHA256:...)" of the recorded keys
	KnownHostsFile string
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("WARNING: THE HOST KEY OF %s HAS CHANGED: the server presented %s key %s, but %s records a different key (%s). "+
		"Someone may be intercepting the connection (man-in-the-middle), or the server was reinstalled. Refusing to connect. "+
		"If you verified that the change is legitimate, delete the old line from %s and run again with --accept-host-key %s",
		e.Host, e.KeyType, e.Fingerprint, e.KnownHostsFile, strings.Join(e.Known, ", "), e.KnownHostsFile, e.Fingerprint)
}

// hostKeys checks server keys strictly against a known_hosts file and
// records a key the user accepted by fingerprint.
type hostKeys struct {
	file   string
	accept string

	mu       sync.Mutex
	pending  ssh.PublicKey // accepted via fingerprint, recorded after auth succeeds
	verified bool          // the last handshake's key passed the check
	last     ssh.PublicKey // the last key a server presented
}

func (h *hostKeys) load() (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(h.file)
	if errors.Is(err, fs.ErrNotExist) {
		// No file yet: every host is unknown.
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known hosts %s: %w", h.file, err)
	}
	return cb, nil
}

// algorithms returns the host key algorithms matching the keys recorded for
// addr, so that a server with several host keys presents the one we know
// rather than one we would mistake for a changed key. Nil means no preference.
func (h *hostKeys) algorithms(addr string, remote net.Addr) []string {
	cb, err := h.load()
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(cb(addr, remote, probe), &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	default:
		return []string{keyType}
	}
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	h.mu.Lock()
	h.last, h.verified = key, false
	h.mu.Unlock()
	cb, err := h.load()
	if err != nil {
		return err
	}
	err = cb(hostname, remote, key)
	if err == nil {
		h.mu.Lock()
		h.verified = true
		h.mu.Unlock()
		return nil
	}
	fp := ssh.FingerprintSHA256(key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return fmt.Errorf("the host key %s of %s is marked @revoked in %s; refusing to connect", fp, hostname, h.file)
	case errors.As(err, &ke) && len(ke.Want) == 0:
		if h.accept != "" && h.accept == fp {
			h.mu.Lock()
			h.pending, h.verified = key, true
			h.mu.Unlock()
			return nil
		}
		if h.accept != "" {
			return fmt.Errorf("the host key of %s is %s, not the accepted %s; refusing to connect", hostname, fp, h.accept)
		}
		return &UnknownHostError{Host: hostname, KeyType: key.Type(), Fingerprint: fp, KnownHostsFile: h.file}
	case errors.As(err, &ke):
		e := &HostKeyChangedError{Host: hostname, KeyType: key.Type(), Fingerprint: fp, KnownHostsFile: h.file}
		for _, w := range ke.Want {
			e.Known = append(e.Known, fmt.Sprintf("%s:%d (%s)", w.Filename, w.Line, ssh.FingerprintSHA256(w.Key)))
		}
		return e
	default:
		return fmt.Errorf("check host key of %s: %w", hostname, err)
	}
}

// record appends a key accepted by fingerprint to the known_hosts file.
func (h *hostKeys) record(addr string) error {
	h.mu.Lock()
	key := h.pending
	h.pending = nil
	h.mu.Unlock()
	if key == nil {
		return nil
	}
	// Another connection may have recorded it meanwhile.
	if cb, err := h.load(); err == nil && cb(addr, &net.TCPAddr{}, key) == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(h.file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		_ = f.Close()
		return fmt.Errorf("record host key in %s: %w", h.file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key in %s: %w", h.file, err)
	}
	return nil
}

func (h *hostKeys) lastKey() (ssh.PublicKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.verified
}

func defaultKnownHosts() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no known_hosts file given and no home directory: %w", err)
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}
