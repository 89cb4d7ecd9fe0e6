package repo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"filippo.io/age"
)

// Role says what a key may do.
type Role string

// Key roles. A host key writes backups and reads metadata; a restore key
// reads everything; a single key is both (restic's model).
const (
	RoleHost    Role = "host"
	RoleRestore Role = "restore"
	RoleSingle  Role = "single"
)

// KeyFile is a client-side key file: one age X25519 identity plus the
// recipients this client pins for the repository, kept in comment lines so
// the file stays readable by the stock age tool.
type KeyFile struct {
	Role       Role
	Repository string // repository id
	Identity   *age.X25519Identity
	// PinHost and PinRestore are the repository's recipients as this
	// client expects them. A repository whose config names others is
	// refused (it could redirect future backups to an attacker's key).
	PinHost    []string
	PinRestore []string
	Created    time.Time
}

// Recipient returns the public key of the identity.
func (k *KeyFile) Recipient() string { return k.Identity.Recipient().String() }

// Marshal renders the key file.
func (k *KeyFile) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# shopvault %s key for repository %s\n", k.Role, k.Repository)
	switch k.Role {
	case RoleHost:
		b.WriteString("# This key writes backups. It cannot read them. Keep it on the server, mode 0600.\n")
	default:
		b.WriteString("# This key READS every backup. Keep it OFF the server: password manager, DR laptop, CI secret.\n")
	}
	fmt.Fprintf(&b, "# created: %s\n", k.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# role: %s\n# repository: %s\n", k.Role, k.Repository)
	for _, r := range k.PinHost {
		fmt.Fprintf(&b, "# pin-host: %s\n", r)
	}
	for _, r := range k.PinRestore {
		fmt.Fprintf(&b, "# pin-restore: %s\n", r)
	}
	fmt.Fprintf(&b, "# public key: %s\n", k.Recipient())
	b.WriteString(k.Identity.String())
	b.WriteString("\n")
	return b.Bytes()
}

// ParseKeyFile parses a key file written by Marshal, or a plain age
// identity file (then Role is RoleSingle and nothing is pinned).
func ParseKeyFile(data []byte) (*KeyFile, error) {
	k := &KeyFile{Role: RoleSingle}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			key, val, ok := strings.Cut(strings.TrimSpace(rest), ":")
			if !ok {
				continue
			}
			val = strings.TrimSpace(val)
			switch strings.TrimSpace(key) {
			case "role":
				k.Role = Role(val)
			case "repository":
				k.Repository = val
			case "pin-host":
				k.PinHost = append(k.PinHost, val)
			case "pin-restore":
				k.PinRestore = append(k.PinRestore, val)
			case "created":
				k.Created, _ = time.Parse(time.RFC3339, val)
			}
			continue
		}
		if k.Identity != nil {
			return nil, fmt.Errorf("line %d: more than one identity in the key file", n)
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not an age X25519 identity (AGE-SECRET-KEY-1…)", n)
		}
		k.Identity = id
	}
	if k.Identity == nil {
		return nil, errors.New("no identity (AGE-SECRET-KEY-1…) in the key file")
	}
	switch k.Role {
	case RoleHost, RoleRestore, RoleSingle:
	default:
		return nil, fmt.Errorf("unknown role %q in the key file", k.Role)
	}
	return k, nil
}

// LoadKeyFile reads and parses a key file, refusing files that group or
// others can read.
func LoadKeyFile(path string) (*KeyFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key file %s does not exist: %w", path, err)
		}
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o: others can read it; run 'chmod 600 %s'", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to path with mode 0600, refusing to overwrite.
func WriteKeyFile(path string, k *KeyFile) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(k.Marshal()); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}
