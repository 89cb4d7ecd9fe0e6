package repo

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"strings"
	"unicode/utf8"
)

// This file holds a reflection-free decoder for the JSON that EncodeTree
// writes. It accepts only that canonical shape: no whitespace, the fields of
// Node and Xattr in struct order (optional ones may be missing), no unknown
// or repeated keys, strings with the escapes json.Marshal emits, unsigned
// integers without sign, fraction or exponent. Anything else, including
// every malformed input, makes it report ok == false, and DecodeTree then
// decodes with encoding/json as before. So the result of DecodeTree never
// depends on which path ran; FuzzDecodeTreeDifferential checks that.
//
// Trees with a string that is not UTF-8 carry "_raw" fields (see
// EncodeTree). The fast path does not know those keys and leaves such
// trees to encoding/json, whose result then goes through treeWire.tree.
// They are rare, and that keeps this file ignorant of raw fields.
//
// Times go through time.Time.UnmarshalJSON, exactly as encoding/json calls
// it, so locations and errors are the standard library's. Strings never
// alias the input: they are copied into a few shared chunks (one allocation
// for many names), and content ids share a few chunks of []ID, each node's
// slice capped so that an append by a caller cannot overwrite a neighbour.

// decodeTreeFast decodes data if it is in the canonical form. ok is false
// if data is anything else; t is then unspecified.
func decodeTreeFast(data []byte) (t Tree, ok bool) {
	p := treeParser{data: data}
	return p.tree()
}

// treeParser is the state of one decodeTreeFast call.
type treeParser struct {
	data []byte
	pos  int
	strs strings.Builder // current chunk of the string arena
	ids  []ID            // current chunk of the id arena
	buf  []byte          // scratch for unescaped strings
}

const (
	treePrefix = `{"nodes":`
	treeSuffix = `]}`
)

func (p *treeParser) tree() (Tree, bool) {
	d := p.data
	if !bytes.HasPrefix(d, []byte(treePrefix)) {
		return Tree{}, false
	}
	p.pos = len(treePrefix)
	if string(d[p.pos:]) == "null}" {
		return Tree{}, true
	}
	if !p.eat('[') {
		return Tree{}, false
	}
	if string(d[p.pos:]) == treeSuffix {
		return Tree{Nodes: []Node{}}, true
	}
	// Every node opens one object: a cheap upper bound of the node count.
	// Xattrs and names with '{' make it too high, so it is also capped by
	// the size of the smallest node EncodeTree writes (about 80 bytes);
	// a low estimate only costs a reallocation.
	count := min(bytes.Count(d, []byte("{"))-1, len(d)/64+1)
	nodes := make([]Node, 0, count)
	p.strs.Grow(len(d)/16 + 32)
	p.ids = make([]ID, 0, 2*count+4)
	for {
		nodes = append(nodes, Node{})
		i := len(nodes) - 1
		var prev *Node
		if i > 0 {
			prev = &nodes[i-1]
		}
		if !p.node(&nodes[i], prev) {
			return Tree{}, false
		}
		if p.eat(',') {
			continue
		}
		if string(d[p.pos:]) != treeSuffix {
			return Tree{}, false
		}
		return Tree{Nodes: nodes}, true
	}
}

// Node fields in the order json.Marshal writes them.
const (
	fieldName = iota
	fieldType
	fieldMode
	fieldUID
	fieldGID
	fieldUser
	fieldGroup
	fieldMtime
	fieldSize
	fieldInode
	fieldDeviceID
	fieldLinks
	fieldLinkTarget
	fieldDevice
	fieldContent
	fieldSubtree
	fieldXattrs
	fieldUnknown = -1
)

func nodeField(key []byte) int {
	switch string(key) {
	case "name":
		return fieldName
	case "type":
		return fieldType
	case "mode":
		return fieldMode
	case "uid":
		return fieldUID
	case "gid":
		return fieldGID
	case "user":
		return fieldUser
	case "group":
		return fieldGroup
	case "mtime":
		return fieldMtime
	case "size":
		return fieldSize
	case "inode":
		return fieldInode
	case "device_id":
		return fieldDeviceID
	case "links":
		return fieldLinks
	case "linktarget":
		return fieldLinkTarget
	case "device":
		return fieldDevice
	case "content":
		return fieldContent
	case "subtree":
		return fieldSubtree
	case "xattrs":
		return fieldXattrs
	}
	return fieldUnknown
}

// node decodes one object into n, which is zero. prev is the node before
// it (nil for the first); equal user and group names share its strings.
func (p *treeParser) node(n *Node, prev *Node) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	last := fieldUnknown
	for {
		key, ok := p.key()
		if !ok {
			return false
		}
		f := nodeField(key)
		if f <= last { // unknown, repeated or out of order
			return false
		}
		last = f
		switch f {
		case fieldName:
			n.Name, ok = p.string()
		case fieldType:
			n.Type, ok = p.nodeType()
		case fieldMode:
			var v uint64
			v, ok = p.uint(1<<32 - 1)
			n.Mode = fs.FileMode(v)
		case fieldUID:
			var v uint64
			v, ok = p.uint(1<<32 - 1)
			n.UID = uint32(v)
		case fieldGID:
			var v uint64
			v, ok = p.uint(1<<32 - 1)
			n.GID = uint32(v)
		case fieldUser:
			var same string
			if prev != nil {
				same = prev.User
			}
			n.User, ok = p.stringOr(same)
		case fieldGroup:
			var same string
			if prev != nil {
				same = prev.Group
			}
			n.Group, ok = p.stringOr(same)
		case fieldMtime:
			ok = p.time(n)
		case fieldSize:
			n.Size, ok = p.uint(1<<64 - 1)
		case fieldInode:
			n.Inode, ok = p.uint(1<<64 - 1)
		case fieldDeviceID:
			n.DeviceID, ok = p.uint(1<<64 - 1)
		case fieldLinks:
			n.Links, ok = p.uint(1<<64 - 1)
		case fieldLinkTarget:
			n.LinkTarget, ok = p.string()
		case fieldDevice:
			n.Device, ok = p.uint(1<<64 - 1)
		case fieldContent:
			n.Content, ok = p.content()
		case fieldSubtree:
			n.Subtree, ok = p.subtree()
		case fieldXattrs:
			n.Xattrs, ok = p.xattrs()
		}
		if !ok {
			return false
		}
		if p.eat(',') {
			continue
		}
		return p.eat('}')
	}
}

// eat consumes c if it is the next byte.
func (p *treeParser) eat(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// key reads `"key":` for a key of lower-case letters and '_'.
func (p *treeParser) key() ([]byte, bool) {
	d := p.data
	i := p.pos
	if i >= len(d) || d[i] != '"' {
		return nil, false
	}
	i++
	start := i
	for i < len(d) && (d[i] >= 'a' && d[i] <= 'z' || d[i] == '_') {
		i++
	}
	if i+1 >= len(d) || d[i] != '"' || d[i+1] != ':' {
		return nil, false
	}
	p.pos = i + 2
	return d[start:i], true
}

// uint reads a JSON number that is an unsigned integer no larger than
// max. It refuses what encoding/json would refuse for an unsigned field
// (signs, fractions, exponents, overflow) and leading zeros, which are not
// JSON; a "0" followed by a digit is left for the caller to refuse.
func (p *treeParser) uint(max uint64) (uint64, bool) {
	d := p.data
	i := p.pos
	if i >= len(d) || d[i] < '0' || d[i] > '9' {
		return 0, false
	}
	if d[i] == '0' {
		p.pos = i + 1
		return 0, true
	}
	var v uint64
	for ; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		digit := uint64(d[i] - '0')
		if v > (max-digit)/10 {
			return 0, false
		}
		v = v*10 + digit
	}
	p.pos = i
	return v, true
}

// stringBytes reads a JSON string and returns its decoded bytes: a slice
// of the input when it holds no escapes, else p.buf. The result is valid
// until the next call. Strings that are not valid UTF-8 (encoding/json would
// replace the bad bytes) or hold escapes it does not handle are refused.
func (p *treeParser) stringBytes() ([]byte, bool) {
	d := p.data
	i := p.pos
	if i >= len(d) || d[i] != '"' {
		return nil, false
	}
	i++
	start := i
	ascii := true
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			s := d[start:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			p.pos = i + 1
			return s, true
		case c == '\\':
			return p.unescape(start)
		case c < ' ':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		i++
	}
	return nil, false
}

// unescape decodes the string whose contents start at start into p.buf.
// It handles what json.Marshal writes: \" \\ \/ \b \f \n \r \t and \uXXXX
// outside the surrogate range; anything else is refused.
func (p *treeParser) unescape(start int) ([]byte, bool) {
	d := p.data
	b := p.buf[:0]
	ascii := true
	i := start
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			// Escapes only add whole runes, so the result is valid UTF-8
			// exactly when every unescaped run of the input is.
			if !ascii && !utf8.Valid(b) {
				return nil, false
			}
			p.buf = b
			p.pos = i + 1
			return b, true
		case c < ' ':
			return nil, false
		case c != '\\':
			if c >= utf8.RuneSelf {
				ascii = false
			}
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(d) {
			return nil, false
		}
		switch e := d[i+1]; e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if i+6 > len(d) {
				return nil, false
			}
			var r rune
			for _, h := range d[i+2 : i+6] {
				v := hexValue[h]
				if v > 0xf {
					return nil, false
				}
				r = r<<4 | rune(v)
			}
			if r >= 0xd800 && r < 0xe000 { // surrogates: leave pairing to encoding/json
				return nil, false
			}
			b = utf8.AppendRune(b, r)
			i += 6
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return nil, false
}

// string reads a JSON string into a string that does not alias the input.
func (p *treeParser) string() (string, bool) {
	s, ok := p.stringBytes()
	if !ok {
		return "", false
	}
	return p.intern(s), true
}

// intern copies b into the string arena. The arena only ever appends, and
// a full chunk is replaced rather than grown, so strings handed out stay
// valid and immutable.
// stringOr parses a string and returns same when it is equal (the owner
// names of a directory's entries repeat), an interned copy otherwise.
func (p *treeParser) stringOr(same string) (string, bool) {
	s, ok := p.stringBytes()
	if !ok {
		return "", false
	}
	if string(s) == same {
		return same, true
	}
	return p.intern(s), true
}

func (p *treeParser) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if p.strs.Cap()-p.strs.Len() < len(b) {
		size := max(2*p.strs.Cap(), len(b), 256)
		p.strs.Reset()
		p.strs.Grow(size)
	}
	start := p.strs.Len()
	p.strs.Write(b)
	return p.strs.String()[start:]
}

func (p *treeParser) nodeType() (NodeType, bool) {
	s, ok := p.stringBytes()
	if !ok {
		return "", false
	}
	switch NodeType(s) {
	case NodeFile:
		return NodeFile, true
	case NodeDir:
		return NodeDir, true
	case NodeSymlink:
		return NodeSymlink, true
	case NodeDev:
		return NodeDev, true
	case NodeCharDev:
		return NodeCharDev, true
	case NodeFifo:
		return NodeFifo, true
	case NodeSocket:
		return NodeSocket, true
	}
	return NodeType(p.intern(s)), true
}

// time reads the mtime string and hands it, quotes included, to
// time.Time.UnmarshalJSON as encoding/json does. encoding/json passes the
// raw bytes without unescaping, so strings with escapes or bytes outside
// printable ASCII are left to it.
func (p *treeParser) time(n *Node) bool {
	d := p.data
	i := p.pos
	if i >= len(d) || d[i] != '"' {
		return false
	}
	for i++; i < len(d) && d[i] != '"'; i++ {
		if d[i] < ' ' || d[i] > '~' || d[i] == '\\' {
			return false
		}
	}
	if i >= len(d) {
		return false
	}
	if err := n.ModTime.UnmarshalJSON(d[p.pos : i+1]); err != nil {
		return false
	}
	p.pos = i + 1
	return true
}

// id reads a quoted 64-digit hex id into dst. Like hex.Decode, it accepts
// upper- and lower-case digits.
func (p *treeParser) id(dst *ID) bool {
	d := p.data
	i := p.pos
	if i+66 > len(d) || d[i] != '"' || d[i+65] != '"' {
		return false
	}
	h := d[i+1 : i+65]
	for j := range dst {
		hi, lo := hexValue[h[2*j]], hexValue[h[2*j+1]]
		if hi|lo > 0xf {
			return false
		}
		dst[j] = hi<<4 | lo
	}
	p.pos = i + 66
	return true
}

// nextID returns the next free slot of the id arena. keep is the number of
// slots at the end of the current chunk that must stay contiguous with the
// new one (the ids of a content list read so far); they are moved along.
func (p *treeParser) nextID(keep int) *ID {
	if len(p.ids) == cap(p.ids) {
		chunk := make([]ID, keep, max(2*cap(p.ids), 2*keep, 16))
		copy(chunk, p.ids[len(p.ids)-keep:])
		p.ids = chunk
	}
	p.ids = p.ids[:len(p.ids)+1]
	return &p.ids[len(p.ids)-1]
}

func (p *treeParser) content() ([]ID, bool) {
	if !p.eat('[') {
		return nil, false
	}
	if p.eat(']') {
		return []ID{}, true // encoding/json makes an empty, non-nil slice
	}
	n := 0
	for {
		if !p.id(p.nextID(n)) {
			return nil, false
		}
		n++
		if p.eat(',') {
			continue
		}
		if !p.eat(']') {
			return nil, false
		}
		end := len(p.ids)
		return p.ids[end-n : end : end], true
	}
}

func (p *treeParser) subtree() (*ID, bool) {
	id := p.nextID(0)
	if !p.id(id) {
		return nil, false
	}
	return id, true
}

func (p *treeParser) xattrs() ([]Xattr, bool) {
	if !p.eat('[') {
		return nil, false
	}
	xs := []Xattr{} // encoding/json makes an empty, non-nil slice for []
	if p.eat(']') {
		return xs, true
	}
	for {
		var x Xattr
		if !p.xattr(&x) {
			return nil, false
		}
		xs = append(xs, x)
		if p.eat(',') {
			continue
		}
		if !p.eat(']') {
			return nil, false
		}
		return xs, true
	}
}

// xattr decodes {"name":…,"value":…}; either key may be missing, and a
// value may be null (json.Marshal writes a nil []byte so).
func (p *treeParser) xattr(x *Xattr) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	last := -1
	for {
		key, ok := p.key()
		if !ok {
			return false
		}
		var f int
		switch string(key) {
		case "name":
			f = 0
		case "value":
			f = 1
		default:
			return false
		}
		if f <= last {
			return false
		}
		last = f
		if f == 0 {
			x.Name, ok = p.string()
		} else {
			x.Value, ok = p.base64()
		}
		if !ok {
			return false
		}
		if p.eat(',') {
			continue
		}
		return p.eat('}')
	}
}

// base64 decodes a []byte value the way encoding/json does: standard
// encoding with padding into a fresh slice; null is nil. Strings with
// escapes or bytes outside printable ASCII are left to encoding/json.
func (p *treeParser) base64() ([]byte, bool) {
	d := p.data
	i := p.pos
	if bytes.HasPrefix(d[i:], []byte("null")) {
		p.pos += len("null")
		return nil, true
	}
	if i >= len(d) || d[i] != '"' {
		return nil, false
	}
	for i++; i < len(d) && d[i] != '"'; i++ {
		if d[i] < ' ' || d[i] > '~' || d[i] == '\\' {
			return nil, false
		}
	}
	if i >= len(d) {
		return nil, false
	}
	s := d[p.pos+1 : i]
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		return nil, false
	}
	p.pos = i + 1
	return b[:n], true
}

// hexValue maps a hex digit to its value and every other byte to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
		t[c-'a'+'A'] = byte(c - 'a' + 10)
	}
	return t
}()
