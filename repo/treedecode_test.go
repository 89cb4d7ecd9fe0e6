package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fast tree decoder must be indistinguishable from encoding/json. These
// tests compare it with json.Unmarshal on the same bytes and compare the
// trees with reflect.DeepEqual, which is the strictest comparison there is:
// it also tells apart a nil slice from an empty one and compares a time's
// *Location deeply. That is sound for times because both decoders build
// them with time.Time.UnmarshalJSON (the UTC location is nil, time.Local is
// one pointer, fixed zones are equal field by field) and parsed times carry
// no monotonic reading.

// nameParts are the pieces random names are made of: what json.Marshal
// escapes, multi-byte UTF-8, and bytes that are not UTF-8 at all.
var nameParts = []string{
	"a", "b", "Z", "0", "9", ".", "..", "-", "_", " ", "~", "index.php", "img",
	`"`, `\`, "\\u0041", "\b", "\f", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
	"<", ">", "&", "<script>", "\u2028", "\u2029", "\ufffd", "\ufeff",
	"é", "ü", "日本", "😀", "\U0010ffff", "\u0800",
	"\xff", "\xfe", "\xc3", "\xc3(", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80",
}

func randomName(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(4) {
		b.WriteString(nameParts[r.IntN(len(nameParts))])
	}
	return b.String()
}

func randomID(r *rand.Rand) ID {
	var id ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

func randomUint64(r *rand.Rand) uint64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	case 2:
		return uint64(r.IntN(10))
	case 3:
		return 1<<32 + uint64(r.IntN(3)) - 1
	}
	return r.Uint64() >> r.IntN(64)
}

func randomUint32(r *rand.Rand) uint32 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return math.MaxUint32
	}
	return r.Uint32() >> r.IntN(32)
}

// testZones are locations whose times json.Marshal writes with "Z", a
// whole-hour offset, an offset with minutes, or the local zone's offset.
func testZones(t testing.TB) []*time.Location {
	zones := []*time.Location{
		time.UTC, time.Local,
		time.FixedZone("", 3600), time.FixedZone("CET", 3600),
		time.FixedZone("", 0), time.FixedZone("", -12*3600), time.FixedZone("", 14*3600),
		time.FixedZone("NPT", 5*3600+45*60), time.FixedZone("", -(3*3600 + 30*60)),
		time.FixedZone("", 59*60), time.FixedZone("", -59),
	}
	for _, name := range []string{"Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe"} {
		if loc, err := time.LoadLocation(name); err == nil {
			zones = append(zones, loc)
		} else {
			t.Logf("no zone %s: %v", name, err)
		}
	}
	return zones
}

func randomTime(r *rand.Rand, zones []*time.Location) time.Time {
	var tm time.Time
	switch r.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		tm = time.Date(1+r.IntN(9998), time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), 0, time.UTC)
	case 2:
		tm = time.Date(9999, 12, 31, 23, 59, 58, 0, time.UTC) // at most 23:59:59.999999999 below
	default:
		tm = time.Unix(946684800+r.Int64N(1<<31), 0)
	}
	switch r.IntN(4) {
	case 0:
		tm = tm.Add(time.Duration(r.IntN(1e9)))
	case 1:
		tm = tm.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
	case 2:
		tm = tm.Add(time.Duration(r.IntN(1e6)) * 1000)
	}
	tm = tm.In(zones[r.IntN(len(zones))])
	if tm.Year() < 0 || tm.Year() > 9999 { // json.Marshal refuses these
		tm = tm.UTC()
	}
	return tm
}

var allNodeTypes = []NodeType{NodeFile, NodeDir, NodeSymlink, NodeDev, NodeCharDev, NodeFifo, NodeSocket}

// randomTree builds a tree that EncodeTree accepts. With plain set, names
// are valid UTF-8, so it survives json.Marshal unchanged.
func randomTree(r *rand.Rand, zones []*time.Location, plain bool) *Tree {
	switch r.IntN(20) {
	case 0:
		return &Tree{}
	case 1:
		return &Tree{Nodes: []Node{}}
	}
	users := []string{"", "www-data", "root", "psuser", randomName(r)}
	if plain {
		users[4] = strings.ToValidUTF8(users[4], "?")
	}
	names := map[string]bool{}
	for range 1 + r.IntN(40) {
		n := randomName(r)
		if plain && !utf8.ValidString(n) {
			continue
		}
		if ValidName(n) == nil {
			names[n] = true
		}
	}
	t := &Tree{}
	for name := range names {
		n := Node{
			Name:  name,
			Type:  allNodeTypes[r.IntN(len(allNodeTypes))],
			Mode:  fs.FileMode(randomUint32(r)),
			UID:   randomUint32(r),
			GID:   randomUint32(r),
			User:  users[r.IntN(len(users))],
			Group: users[r.IntN(len(users))],
		}
		n.ModTime = randomTime(r, zones)
		if r.IntN(2) == 0 {
			n.Size, n.Inode, n.DeviceID, n.Links, n.Device = randomUint64(r), randomUint64(r), randomUint64(r), randomUint64(r), randomUint64(r)
		}
		switch n.Type {
		case NodeDir:
			id := randomID(r)
			n.Subtree = &id
		case NodeFile:
			chunks := r.IntN(4)
			if r.IntN(10) == 0 { // a big file: its ids outgrow the decoder's first id chunk
				chunks = 1 + r.IntN(300)
			}
			for range chunks {
				n.Content = append(n.Content, randomID(r))
			}
		case NodeSymlink:
			n.LinkTarget = randomName(r)
			if plain && !utf8.ValidString(n.LinkTarget) {
				n.LinkTarget = "../target"
			}
		}
		for range max(0, r.IntN(8)-5) {
			x := Xattr{Name: "user." + randomName(r)}
			if plain {
				x.Name = strings.ToValidUTF8(x.Name, "?")
			}
			switch r.IntN(3) {
			case 0:
				x.Value = []byte{}
			case 1:
				x.Value = []byte(randomName(r))
			}
			n.Xattrs = append(n.Xattrs, x)
		}
		t.Nodes = append(t.Nodes, n)
	}
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return t
}

// checkSameAsJSON fails unless DecodeTree and the encoding/json reference
// agree on data: the same tree, or errors with the same text.
func checkSameAsJSON(t testing.TB, data []byte) {
	t.Helper()
	got, gotErr := DecodeTree(data)
	want, wantErr := decodeTreeJSON(data)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("DecodeTree(%q):\nerror %v\nencoding/json: %v", data, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeTree(%q):\n got %#v\nwant %#v", data, got, want)
	}
}

// checkFastMatchesUnmarshal fails if the fast path accepts data and its
// tree is not exactly what json.Unmarshal makes of it.
func checkFastMatchesUnmarshal(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	got, ok := decodeTreeFast(data)
	if !ok {
		return false
	}
	var want Tree
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("fast path accepted %q, json.Unmarshal refuses it: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path on %q:\n got %#v\nwant %#v", data, got, want)
	}
	return true
}

// TestDecodeTreeFastDifferential decodes random trees both ways. Trees
// whose strings are all UTF-8 must take the fast path; the others carry
// raw fields (see EncodeTree), which the fast path leaves to encoding/json.
func TestDecodeTreeFastDifferential(t *testing.T) {
	zones := testZones(t)
	r := rand.New(rand.NewPCG(1, 2))
	n := 1000
	if testing.Short() {
		n = 200
	}
	var raw int
	for i := range n {
		tr := randomTree(r, zones, i%2 == 0)
		data, err := EncodeTree(tr)
		if err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
		plain := treeIsUTF8(tr)
		if fast := checkFastMatchesUnmarshal(t, data); fast != plain {
			t.Fatalf("tree %d: fast path taken %v for a tree whose strings are UTF-8: %v: %q", i, fast, plain, data)
		}
		if !plain {
			raw++
		}
		checkSameAsJSON(t, data)
	}
	if raw < n/4 {
		t.Fatalf("only %d of %d trees have strings that are not UTF-8", raw, n)
	}
}

// treeIsUTF8 reports whether every string of t is valid UTF-8, written
// independently of the encoder's own check.
func treeIsUTF8(t *Tree) bool {
	for _, n := range t.Nodes {
		strs := []string{n.Name, n.User, n.Group, n.LinkTarget}
		for _, x := range n.Xattrs {
			strs = append(strs, x.Name)
		}
		for _, s := range strs {
			if strings.ToValidUTF8(s, "?") != s {
				return false
			}
		}
	}
	return true
}

// TestDecodeTreeRoundTrip checks the decoder against the tree that was
// encoded, not only against encoding/json: everything comes back, strings
// byte for byte whether or not they are UTF-8, times as the same instant
// with the same offset, and encoding the result again gives the same blob.
func TestDecodeTreeRoundTrip(t *testing.T) {
	zones := testZones(t)
	r := rand.New(rand.NewPCG(3, 4))
	var collisions int
	for i := range 500 {
		orig := randomTree(r, zones, i%2 == 0)
		data, err := EncodeTree(orig)
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.Valid(data) {
			t.Fatalf("tree %d: blob is not UTF-8: %q", i, data)
		}
		got, err := DecodeTree(data)
		if err != nil {
			t.Fatalf("tree %d: %v\n%q", i, err, data)
		}
		// Offsets with seconds are written rounded (see below), so only
		// trees without them must give the same blob again.
		again, err := EncodeTree(got)
		if err != nil || (!bytes.Equal(again, data) && !hasSecondsOffset(orig)) {
			t.Fatalf("tree %d: re-encoded (%v)\n%q\nwant\n%q", i, err, again, data)
		}
		shown := map[string]bool{}
		for _, n := range orig.Nodes {
			d := strings.ToValidUTF8(n.Name, "\ufffd")
			if shown[d] {
				collisions++
			}
			shown[d] = true
		}
		if len(got.Nodes) != len(orig.Nodes) || (got.Nodes == nil) != (orig.Nodes == nil) {
			t.Fatalf("tree %d: %d nodes (nil %v), want %d (nil %v)", i, len(got.Nodes), got.Nodes == nil, len(orig.Nodes), orig.Nodes == nil)
		}
		for j := range got.Nodes {
			g, w := got.Nodes[j], orig.Nodes[j]
			_, gOff := g.ModTime.Zone()
			_, wOff := w.ModTime.Zone()
			// RFC 3339 has no seconds in offsets, so json.Marshal loses
			// them; such times cannot come back.
			if wOff%60 == 0 && (!g.ModTime.Equal(w.ModTime) || gOff != wOff) {
				t.Fatalf("tree %d node %q: mtime %v, want %v", i, w.Name, g.ModTime, w.ModTime)
			}
			g.ModTime, w.ModTime = time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("tree %d:\n got %#v\nwant %#v", i, g, w)
			}
		}
	}
	if collisions == 0 {
		t.Fatal("no tree had two names that only differ in bytes that are not UTF-8")
	}
}

func hasSecondsOffset(t *Tree) bool {
	for _, n := range t.Nodes {
		if _, off := n.ModTime.Zone(); off%60 != 0 {
			return true
		}
	}
	return false
}

// TestDecodeTreeFastFallback feeds the fast path what EncodeTree never
// writes. Each input must either be refused by the fast path (and then
// decoded by encoding/json) or be decoded exactly as encoding/json does.
func TestDecodeTreeFastFallback(t *testing.T) {
	id := strings.Repeat("ab", 32)
	node := func(s string) string { return `{"nodes":[` + s + `]}` }
	const mt = `"mtime":"2024-03-01T10:00:00.5+01:00"`
	tests := []struct {
		name string
		data string
		fast bool // whether the fast path is expected to handle it
	}{
		{"canonical", node(`{"name":"a","type":"file","mode":420,"uid":33,"gid":33,"user":"www-data",` + mt + `,"size":5,"content":["` + id + `"]}`), true},
		{"minimal", node(`{"name":"a","type":"fifo"}`), true},
		{"empty node", node(`{}`), true},
		{"null nodes", `{"nodes":null}`, true},
		{"empty nodes", `{"nodes":[]}`, true},
		{"upper-case hex", node(`{"name":"a","type":"dir","subtree":"` + strings.ToUpper(id) + `"}`), true},
		{"empty content", node(`{"name":"a","type":"file","content":[]}`), true},
		{"empty xattrs", node(`{"name":"a","type":"file","xattrs":[]}`), true},
		{"xattr null value", node(`{"name":"a","type":"file","xattrs":[{"name":"user.x","value":null}]}`), true},
		{"xattr empty", node(`{"name":"a","type":"file","xattrs":[{}]}`), true},
		{"zero size", node(`{"name":"a","type":"file","size":0}`), true},
		{"max uint64", node(`{"name":"a","type":"file","size":18446744073709551615}`), true},
		{"max uint32", node(`{"name":"a","type":"file","uid":4294967295}`), true},
		{"escapes", node(`{"name":"\"\\\/\b\f\n\r\t\u003c\u00e9\u2028\uFFFD","type":"file"}`), true},
		{"unknown type", node(`{"name":"a","type":"weird"}`), true},
		{"missing name", node(`{"type":"file"}`), true},
		{"unsorted", node(`{"name":"b","type":"file"},{"name":"a","type":"file"}`), true},
		{"slash in name", node(`{"name":"a/b","type":"file"}`), true},
		{"nul in name", node(`{"name":"a\u0000","type":"file"}`), true},
		{"dir without subtree", node(`{"name":"a","type":"dir"}`), true},
		{"zero time", node(`{"name":"a","type":"file","mtime":"0001-01-01T00:00:00Z"}`), true},
		{"bad time", node(`{"name":"a","type":"file","mtime":"2024-13-01T10:00:00Z"}`), false},
		{"time without zone", node(`{"name":"a","type":"file","mtime":"2024-03-01T10:00:00"}`), false},
		{"time with escape", node(`{"name":"a","type":"file","mtime":"2024-03-01T10:00:00\u005a"}`), false},
		{"null time", node(`{"name":"a","type":"file","mtime":null}`), false},

		{"space", `{"nodes": []}`, false},
		{"trailing newline", `{"nodes":[]}` + "\n", false},
		{"trailing garbage", `{"nodes":[]}x`, false},
		{"leading space", ` {"nodes":[]}`, false},
		{"empty object", `{}`, false},
		{"not an object", `[]`, false},
		{"empty", ``, false},
		{"truncated", node(`{"name":"a","type":"file"`)[:30], false},
		{"fields out of order", node(`{"type":"file","name":"a"}`), false},
		{"duplicate key", node(`{"name":"a","name":"b","type":"file"}`), false},
		{"case-folded key", node(`{"Name":"a","type":"file"}`), false},
		{"unknown key", node(`{"name":"a","type":"file","color":"red"}`), false},
		{"unknown top-level key", `{"nodes":[],"x":1}`, false},
		{"null name", node(`{"name":null,"type":"file"}`), false},
		{"null subtree", node(`{"name":"a","type":"file","subtree":null}`), false},
		{"null content", node(`{"name":"a","type":"file","content":null}`), false},
		{"null node", `{"nodes":[null]}`, false},
		{"surrogate pair", node(`{"name":"\ud83d\ude00","type":"file"}`), false},
		{"lone surrogate", node(`{"name":"\ud800x","type":"file"}`), false},
		{"lone low surrogate", node(`{"name":"\udc00x","type":"file"}`), false},
		{"single quote escape", node(`{"name":"\'","type":"file"}`), false},
		{"bad escape", node(`{"name":"\x41","type":"file"}`), false},
		{"short unicode escape", node(`{"name":"\u41","type":"file"}`), false},
		{"raw control char", node("{\"name\":\"a\tb\",\"type\":\"file\"}"), false},
		{"raw invalid utf-8", node("{\"name\":\"a\xffb\",\"type\":\"file\"}"), false},
		{"raw invalid utf-8 with escape", node("{\"name\":\"\xc3\\\"\",\"type\":\"file\"}"), false},
		{"fraction", node(`{"name":"a","type":"file","mode":1.0}`), false},
		{"exponent", node(`{"name":"a","type":"file","size":1e3}`), false},
		{"negative", node(`{"name":"a","type":"file","uid":-1}`), false},
		{"minus zero", node(`{"name":"a","type":"file","uid":-0}`), false},
		{"leading zero", node(`{"name":"a","type":"file","uid":01}`), false},
		{"uint32 overflow", node(`{"name":"a","type":"file","mode":4294967296}`), false},
		{"uid overflow", node(`{"name":"a","type":"file","uid":4294967296}`), false},
		{"gid overflow", node(`{"name":"a","type":"file","gid":99999999999}`), false},
		{"uint64 overflow", node(`{"name":"a","type":"file","size":18446744073709551616}`), false},
		{"quoted number", node(`{"name":"a","type":"file","size":"5"}`), false},
		{"short id", node(`{"name":"a","type":"dir","subtree":"abcd"}`), false},
		{"non-hex id", node(`{"name":"a","type":"dir","subtree":"` + strings.Repeat("zz", 32) + `"}`), false},
		{"escaped id", node(`{"name":"a","type":"dir","subtree":"\u0061` + id[1:] + `"}`), false},
		{"content not a list", node(`{"name":"a","type":"file","content":"` + id + `"}`), false},
		{"bad base64", node(`{"name":"a","type":"file","xattrs":[{"name":"x","value":"!!"}]}`), false},
		{"base64 with escaped newline", node(`{"name":"a","type":"file","xattrs":[{"name":"x","value":"QQ\n=="}]}`), false},
		{"base64 as list", node(`{"name":"a","type":"file","xattrs":[{"name":"x","value":[65]}]}`), false},
		{"xattr out of order", node(`{"name":"a","type":"file","xattrs":[{"value":"","name":"x"}]}`), false},
		{"trailing comma", node(`{"name":"a","type":"file"},`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			if fast := checkFastMatchesUnmarshal(t, data); fast != tc.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tc.fast)
			}
			checkSameAsJSON(t, data)
		})
	}
}

// TestDecodeTreeDoesNotAlias checks that a decoded tree owns its memory:
// a caller may reuse the blob buffer, and appending to one node's content
// must not change another's.
func TestDecodeTreeDoesNotAlias(t *testing.T) {
	tr := benchTree()
	data, err := EncodeTree(tr)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(data)
	got, err := DecodeTree(buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'x'
	}
	want, err := decodeTreeJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("decoded tree changed when the input buffer was overwritten")
	}
	var files []int
	for i, n := range got.Nodes {
		if len(n.Content) > 0 {
			files = append(files, i)
		}
	}
	if len(files) < 2 {
		t.Fatal("bench tree has too few files")
	}
	for _, i := range files {
		got.Nodes[i].Content = append(got.Nodes[i].Content, ID{0xee})
		got.Nodes[i].Name += "!"
	}
	for _, i := range files {
		if c := got.Nodes[i].Content; !reflect.DeepEqual(c[:len(c)-1], want.Nodes[i].Content) {
			t.Fatalf("node %d: content %v, want %v plus one", i, c, want.Nodes[i].Content)
		}
	}
}

func FuzzDecodeTreeDifferential(f *testing.F) {
	zones := testZones(f)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 20 {
		data, err := EncodeTree(randomTree(r, zones, i%2 == 0))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	bench, err := EncodeTree(benchTree())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bench)
	f.Add([]byte(`{"nodes":[{"name":"\u00e9\u2028\"","type":"file","xattrs":[{"name":"x","value":null},{}]}]}`))
	f.Add([]byte(`{"nodes":[{"name":"a","type":"file","mode":01}]}`))
	f.Add([]byte(`{"nodes":[{"name":"\ud83d\ude00","type":"dir","subtree":"` + strings.Repeat("AB", 32) + `"}]}`))
	for _, s := range rawFieldCases {
		f.Add([]byte(s.data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastMatchesUnmarshal(t, data)
		checkSameAsJSON(t, data)
		checkReencodes(t, data)
	})
}

// checkReencodes fails unless a tree that decodes from data encodes to a
// blob that decodes to a tree encoding to the same blob again: EncodeTree's
// output is a fixed point, whatever form the input had.
func checkReencodes(t testing.TB, data []byte) {
	t.Helper()
	tr, err := DecodeTree(data)
	if err != nil {
		return
	}
	enc, err := EncodeTree(tr)
	if err != nil {
		t.Fatalf("decoded tree of %q does not encode: %v", data, err)
	}
	tr2, err := DecodeTree(enc)
	if err != nil {
		t.Fatalf("EncodeTree wrote %q, DecodeTree refuses it: %v", enc, err)
	}
	if fast := checkFastMatchesUnmarshal(t, enc); fast != treeIsUTF8(tr) {
		t.Fatalf("fast path taken %v on %q", fast, enc)
	}
	if enc2, err := EncodeTree(tr2); err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encoding %q gave %q (%v)", enc, enc2, err)
	}
}

// benchTree is a typical shop directory: 50 files of one to three chunks,
// a few subdirectories, a symlink, owned by the web server user.
func benchTree() *Tree {
	r := rand.New(rand.NewPCG(7, 8))
	cet := time.FixedZone("", 3600)
	t := &Tree{}
	for i := range 50 {
		n := Node{
			Name: fmt.Sprintf("%s-%04d.%s", []string{"product", "category", "cms", "thumb"}[i%4], r.IntN(10000), []string{"jpg", "php", "tpl"}[i%3]),
			Type: NodeFile, Mode: 0o644, UID: 33, GID: 33, User: "www-data", Group: "www-data",
			ModTime: time.Unix(1700000000+r.Int64N(3e7), r.Int64N(1e9)).In(cet),
			Size:    uint64(r.IntN(3 << 20)), Inode: 1<<20 + uint64(r.IntN(1<<20)), DeviceID: 2049, Links: 1,
		}
		for range 1 + r.IntN(3) {
			n.Content = append(n.Content, randomID(r))
		}
		t.Nodes = append(t.Nodes, n)
	}
	for i := range 5 {
		id := randomID(r)
		t.Nodes = append(t.Nodes, Node{
			Name: fmt.Sprintf("dir%d", i), Type: NodeDir, Mode: fs.ModeDir | 0o755, UID: 33, GID: 33,
			User: "www-data", Group: "www-data", ModTime: time.Unix(1700000000+r.Int64N(3e7), r.Int64N(1e9)).In(cet),
			Inode: 1<<20 + uint64(r.IntN(1<<20)), DeviceID: 2049, Links: 2, Subtree: &id,
		})
	}
	t.Nodes = append(t.Nodes, Node{
		Name: "latest", Type: NodeSymlink, Mode: fs.ModeSymlink | 0o777, UID: 33, GID: 33,
		User: "www-data", Group: "www-data", ModTime: time.Unix(1700000000, 0).In(cet), LinkTarget: "dir0/product-0001.jpg",
	})
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	t.Nodes = slices.CompactFunc(t.Nodes, func(a, b Node) bool { return a.Name == b.Name })
	return t
}

func BenchmarkDecodeTree(b *testing.B) {
	data, err := EncodeTree(benchTree())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		decode func([]byte) (*Tree, error)
	}{
		{"json", decodeTreeJSON},
		{"fast", DecodeTree},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := bc.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
