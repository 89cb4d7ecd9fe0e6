// Package repo implements the shopvault repository format (version 1): keys,
// config, packs of compressed and encrypted blobs, the index, trees,
// snapshots, refs lists and locks. See DESIGN.md "Repository format".
package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID identifies a blob (keyed hash of its plaintext) or a stored file
// (SHA-256 of its stored bytes).
type ID [32]byte

// String returns the lower-case hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex characters.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether id is all zeros.
func (id ID) IsNull() bool { return id == ID{} }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses a 64-character hex id.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("invalid id %q: want 64 hex characters", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid id %q: %w", s, err)
	}
	return id, nil
}

// Hash returns the SHA-256 of b as an ID (used for stored files).
func Hash(b []byte) ID { return sha256.Sum256(b) }

// BlobType says what a blob holds.
type BlobType uint8

// Blob types. Tree blobs and data blobs go to separate packs.
const (
	DataBlob BlobType = 1
	TreeBlob BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// BlobHandle names a blob.
type BlobHandle struct {
	Type BlobType
	ID   ID
}

func (h BlobHandle) String() string { return h.Type.String() + "/" + h.ID.Short() }
