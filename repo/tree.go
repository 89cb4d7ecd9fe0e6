package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"
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
//
// Names and other strings of a node are bytes, as the file system gives
// them, and need not be UTF-8 (a Latin-1 "caf\xe9.jpg" uploaded from an old
// FTP client). JSON strings cannot hold such bytes: json.Marshal would write
// each as U+FFFD, so the name would come back changed, and two names that
// differ only there would collide. So for each string that is not valid
// UTF-8 (name, user, group, link target, xattr name) the tree also stores
// its exact bytes, base64, in a field named after it with "_raw" appended
// ("name_raw", "linktarget_raw"), and the field itself holds
// strings.ToValidUTF8(s, "\uFFFD") for readers that only display it.
// Trees whose strings are all valid UTF-8 encode exactly as they did before
// the raw fields existed.
func EncodeTree(t *Tree) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if t.validUTF8() {
		return json.Marshal(t)
	}
	return json.Marshal(t.wire())
}

// DecodeTree parses and validates a tree blob. It refuses names that could
// escape a restore target: empty, ".", "..", containing "/" or NUL,
// duplicates, and unsorted listings. A string stored with a "_raw" field
// (see EncodeTree) decodes to the raw bytes; a raw field that is valid
// UTF-8, or that does not match the string beside it, is refused, so a tree
// has one encoding. The checks on names apply to the raw bytes.
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
	var w treeWire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("decode tree: %w", err)
	}
	t, err := w.tree()
	if err != nil {
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

// validUTF8 reports whether every string EncodeTree writes is valid UTF-8,
// so that json.Marshal keeps them as they are.
func (t *Tree) validUTF8() bool {
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if !utf8.ValidString(n.Name) || !utf8.ValidString(n.User) || !utf8.ValidString(n.Group) || !utf8.ValidString(n.LinkTarget) {
			return false
		}
		for _, x := range n.Xattrs {
			if !utf8.ValidString(x.Name) {
				return false
			}
		}
	}
	return true
}

// treeWire, nodeWire and xattrWire are Tree, Node and Xattr as stored:
// each string that may not be UTF-8 is followed by its raw bytes, which
// are present only when it is not (see EncodeTree). Field order and names
// are the repository format.
type treeWire struct {
	Nodes []nodeWire `json:"nodes"`
}

type nodeWire struct {
	Name          string      `json:"name"`
	NameRaw       []byte      `json:"name_raw,omitempty"`
	Type          NodeType    `json:"type"`
	Mode          fs.FileMode `json:"mode"`
	UID           uint32      `json:"uid"`
	GID           uint32      `json:"gid"`
	User          string      `json:"user,omitempty"`
	UserRaw       []byte      `json:"user_raw,omitempty"`
	Group         string      `json:"group,omitempty"`
	GroupRaw      []byte      `json:"group_raw,omitempty"`
	ModTime       time.Time   `json:"mtime"`
	Size          uint64      `json:"size,omitempty"`
	Inode         uint64      `json:"inode,omitempty"`
	DeviceID      uint64      `json:"device_id,omitempty"`
	Links         uint64      `json:"links,omitempty"`
	LinkTarget    string      `json:"linktarget,omitempty"`
	LinkTargetRaw []byte      `json:"linktarget_raw,omitempty"`
	Device        uint64      `json:"device,omitempty"`
	Content       []ID        `json:"content,omitempty"`
	Subtree       *ID         `json:"subtree,omitempty"`
	Xattrs        []xattrWire `json:"xattrs,omitempty"`
}

type xattrWire struct {
	Name    string `json:"name"`
	NameRaw []byte `json:"name_raw,omitempty"`
	Value   []byte `json:"value"`
}

// splitRaw returns what the wire format stores for s: s itself if it is
// valid UTF-8, else its display form and its bytes.
func splitRaw(s string) (string, []byte) {
	if utf8.ValidString(s) {
		return s, nil
	}
	return strings.ToValidUTF8(s, "\uFFFD"), []byte(s)
}

// joinRaw undoes splitRaw. field names the JSON field, for errors.
func joinRaw(field, display string, raw []byte) (string, error) {
	if raw == nil {
		return display, nil
	}
	if utf8.Valid(raw) {
		return "", fmt.Errorf("%s_raw %q is valid UTF-8, which is stored in %q alone: the tree blob was not written by shopvault or is damaged", field, raw, field)
	}
	if want := strings.ToValidUTF8(string(raw), "\uFFFD"); display != want {
		return "", fmt.Errorf("%s_raw %q does not match %s %q (want %q): the tree blob was not written by shopvault or is damaged", field, raw, field, display, want)
	}
	return string(raw), nil
}

func (t *Tree) wire() *treeWire {
	w := &treeWire{Nodes: make([]nodeWire, len(t.Nodes))}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		nw := &w.Nodes[i]
		nw.Name, nw.NameRaw = splitRaw(n.Name)
		nw.User, nw.UserRaw = splitRaw(n.User)
		nw.Group, nw.GroupRaw = splitRaw(n.Group)
		nw.LinkTarget, nw.LinkTargetRaw = splitRaw(n.LinkTarget)
		nw.Type, nw.Mode, nw.UID, nw.GID, nw.ModTime = n.Type, n.Mode, n.UID, n.GID, n.ModTime
		nw.Size, nw.Inode, nw.DeviceID, nw.Links, nw.Device = n.Size, n.Inode, n.DeviceID, n.Links, n.Device
		nw.Content, nw.Subtree = n.Content, n.Subtree
		if n.Xattrs != nil {
			nw.Xattrs = make([]xattrWire, len(n.Xattrs))
			for j, x := range n.Xattrs {
				nw.Xattrs[j].Name, nw.Xattrs[j].NameRaw = splitRaw(x.Name)
				nw.Xattrs[j].Value = x.Value
			}
		}
	}
	return w
}

func (w *treeWire) tree() (Tree, error) {
	var t Tree
	if w.Nodes != nil {
		t.Nodes = make([]Node, len(w.Nodes))
	}
	for i := range w.Nodes {
		nw := &w.Nodes[i]
		n := &t.Nodes[i]
		var err error
		if n.Name, err = joinRaw("name", nw.Name, nw.NameRaw); err != nil {
			return Tree{}, fmt.Errorf("entry %q: %w", nw.Name, err)
		}
		if n.User, err = joinRaw("user", nw.User, nw.UserRaw); err != nil {
			return Tree{}, fmt.Errorf("entry %q: %w", n.Name, err)
		}
		if n.Group, err = joinRaw("group", nw.Group, nw.GroupRaw); err != nil {
			return Tree{}, fmt.Errorf("entry %q: %w", n.Name, err)
		}
		if n.LinkTarget, err = joinRaw("linktarget", nw.LinkTarget, nw.LinkTargetRaw); err != nil {
			return Tree{}, fmt.Errorf("entry %q: %w", n.Name, err)
		}
		n.Type, n.Mode, n.UID, n.GID, n.ModTime = nw.Type, nw.Mode, nw.UID, nw.GID, nw.ModTime
		n.Size, n.Inode, n.DeviceID, n.Links, n.Device = nw.Size, nw.Inode, nw.DeviceID, nw.Links, nw.Device
		n.Content, n.Subtree = nw.Content, nw.Subtree
		if nw.Xattrs != nil {
			n.Xattrs = make([]Xattr, len(nw.Xattrs))
			for j, xw := range nw.Xattrs {
				if n.Xattrs[j].Name, err = joinRaw("name", xw.Name, xw.NameRaw); err != nil {
					return Tree{}, fmt.Errorf("entry %q: xattr %q: %w", n.Name, xw.Name, err)
				}
				n.Xattrs[j].Value = xw.Value
			}
		}
	}
	return t, nil
}
