package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// NodeType is the kind of a tree entry.
type NodeType string

// Node types.
const (
	NodeFile    NodeType = "file"
	NodeDir     NodeType = "dir"
	NodeSymlink NodeType = "symlink"
	NodeDev     NodeType = "dev"
	NodeCharDev NodeType = "chardev"
	NodeFifo    NodeType = "fifo"
	NodeSocket  NodeType = "socket"
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// Node is one entry of a directory. Content lists the data blobs of a
// file in order; Subtree is the tree blob of a directory.
type Node struct {
	Name       string      `json:"name"`
	Type       NodeType    `json:"type"`
	Mode       fs.FileMode `json:"mode"`
	UID        uint32      `json:"uid"`
	GID        uint32      `json:"gid"`
	User       string      `json:"user,omitempty"`
	Group      string      `json:"group,omitempty"`
	ModTime    time.Time   `json:"mtime"`
	Size       uint64      `json:"size,omitempty"`
	Inode      uint64      `json:"inode,omitempty"`
	DeviceID   uint64      `json:"device_id,omitempty"`
	Links      uint64      `json:"links,omitempty"`
	LinkTarget string      `json:"linktarget,omitempty"`
	Device     uint64      `json:"device,omitempty"`
	Content    []ID        `json:"content,omitempty"`
	Subtree    *ID         `json:"subtree,omitempty"`
	Xattrs     []Xattr     `json:"xattrs,omitempty"`
}

// Tree is a directory listing, sorted by name.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// EncodeTree renders a tree deterministically: the same tree always
// gives the same bytes, so unchanged directories deduplicate.
func EncodeTree(t *Tree) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(t)
}

// DecodeTree parses and validates a tree blob. It refuses names that could
// escape a restore target: empty, ".", "..", containing "/" or NUL,
// duplicates, and unsorted listings.
//
// Blobs in the exact form EncodeTree writes take a fast path without
// reflection (treedecode.go); anything else goes through encoding/json, and
// both give the same tree or the same error.
func DecodeTree(data []byte) (*Tree, error) {
	t, ok := decodeTreeFast(data)
	if !ok {
		return decodeTreeJSON(data)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// decodeTreeJSON is DecodeTree with encoding/json: the fallback of the
// fast path and the reference it is tested against.
func decodeTreeJSON(data []byte) (*Tree, error) {
	var t Tree
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode tree: %w", err)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// ValidName reports whether name is safe as one path component.
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid file name %q", name)
	}
	return nil
}

func (t *Tree) validate() error {
	for i, n := range t.Nodes {
		if err := ValidName(n.Name); err != nil {
			return err
		}
		if i > 0 && t.Nodes[i-1].Name >= n.Name {
			return fmt.Errorf("tree entries not sorted or duplicated at %q", n.Name)
		}
		switch n.Type {
		case NodeDir:
			if n.Subtree == nil {
				return fmt.Errorf("directory %q has no subtree", n.Name)
			}
		case NodeFile, NodeSymlink, NodeDev, NodeCharDev, NodeFifo, NodeSocket:
			if n.Subtree != nil {
				return fmt.Errorf("%s %q has a subtree", n.Type, n.Name)
			}
		default:
			return fmt.Errorf("entry %q has unknown type %q", n.Name, n.Type)
		}
		if n.Type != NodeFile && len(n.Content) > 0 {
			return fmt.Errorf("%s %q has content", n.Type, n.Name)
		}
	}
	return nil
}

// Find returns the node named name, or nil.
func (t *Tree) Find(name string) *Node {
	lo, hi := 0, len(t.Nodes)
	for lo < hi {
		m := (lo + hi) / 2
		if t.Nodes[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.Nodes) && t.Nodes[lo].Name == name {
		return &t.Nodes[lo]
	}
	return nil
}

// errNotDir is returned when a path component is not a directory.
var errNotDir = errors.New("not a directory")
