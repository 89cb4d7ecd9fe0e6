package repo

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Names that are not UTF-8 (Latin-1 uploads, old FTP clients) must come
// back byte for byte; see EncodeTree for the "_raw" fields that carry them.

// latin1Tree is a shop directory with Latin-1 names: two that differ only
// in a byte that is not UTF-8, a symlink to one of them, and an owner,
// group and xattr name that are not UTF-8 either.
func latin1Tree() *Tree {
	sub := ID{1, 2, 3}
	mt := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	return &Tree{Nodes: []Node{
		{Name: "a\xfe", Type: NodeFile, Mode: 0o644, ModTime: mt, Content: []ID{{4}}},
		{Name: "a\xff", Type: NodeFile, Mode: 0o644, ModTime: mt, Content: []ID{{5}}},
		{Name: "caf\xe9.jpg", Type: NodeFile, Mode: 0o644, UID: 1000, User: "jos\xe9", Group: "\xe9quipe", ModTime: mt,
			Xattrs: []Xattr{{Name: "user.note\xe9", Value: []byte("x")}, {Name: "user.plain", Value: []byte("y")}}},
		{Name: "d\xe8s", Type: NodeDir, Mode: fs.ModeDir | 0o755, ModTime: mt, Subtree: &sub},
		{Name: "latest", Type: NodeSymlink, Mode: fs.ModeSymlink | 0o777, ModTime: mt, LinkTarget: "d\xe8s/caf\xe9.jpg"},
		{Name: "\xff", Type: NodeFifo, ModTime: mt},
	}}
}

func TestTreeNotUTF8RoundTrip(t *testing.T) {
	orig := latin1Tree()
	data, err := EncodeTree(orig)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(data) {
		t.Fatalf("blob is not UTF-8: %q", data)
	}
	got, err := DecodeTree(data)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, orig) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, orig)
	}
	for _, name := range []string{"a\xfe", "a\xff", "caf\xe9.jpg", "\xff"} {
		if n := got.Find(name); n == nil || n.Name != name {
			t.Fatalf("Find(%q) = %+v", name, n)
		}
	}
	if got.Find("a\ufffd") != nil || got.Find("caf\ufffd.jpg") != nil {
		t.Fatal("Find matches the display form of a name")
	}
	again, err := EncodeTree(got)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("re-encoded (%v)\n%s\nwant\n%s", err, again, data)
	}
	checkSameAsJSON(t, data)
}

// TestTreeNotUTF8Format pins the stored form, read with a plain JSON
// decoder as any other reader would: the field holds the name with U+FFFD
// for each bad sequence, the "_raw" field beside it the exact bytes.
func TestTreeNotUTF8Format(t *testing.T) {
	data, err := EncodeTree(latin1Tree())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{
		{"name": "a\ufffd", "name_raw": "Yf4="},
		{"name": "a\ufffd", "name_raw": "Yf8="},
		{"name": "caf\ufffd.jpg", "name_raw": "Y2Fm6S5qcGc=", "user": "jos\ufffd", "user_raw": "am9z6Q==", "group": "\ufffdquipe", "group_raw": "6XF1aXBl"},
		{"name": "d\ufffds", "name_raw": "ZOhz"},
		{"name": "latest", "linktarget": "d\ufffds/caf\ufffd.jpg", "linktarget_raw": "ZOhzL2NhZukuanBn"},
		{"name": "\ufffd", "name_raw": "/w=="},
	}
	for i, w := range want {
		for k, v := range w {
			if got, _ := doc.Nodes[i][k].(string); got != v {
				t.Errorf("node %d: %s = %q, want %q", i, k, got, v)
			}
		}
		for k := range doc.Nodes[i] {
			if strings.HasSuffix(k, "_raw") && w[k] == "" {
				t.Errorf("node %d: unexpected %s", i, k)
			}
		}
	}
	xs, _ := doc.Nodes[2]["xattrs"].([]any)
	if len(xs) != 2 {
		t.Fatalf("xattrs %v", doc.Nodes[2]["xattrs"])
	}
	x0, _ := xs[0].(map[string]any)
	x1, _ := xs[1].(map[string]any)
	if x0["name"] != "user.note\ufffd" || x0["name_raw"] != "dXNlci5ub3Rl6Q==" || x1["name"] != "user.plain" || x1["name_raw"] != nil {
		t.Fatalf("xattrs %v", xs)
	}
	if i := bytes.Index(data, []byte(`"name_raw"`)); i < 0 || !bytes.HasPrefix(data, []byte(`{"nodes":[{"name":"a`)) {
		t.Fatalf("raw field missing or misplaced: %s", data)
	}
	if !bytes.Contains(data, []byte(`{"name":"a`+"\ufffd"+`","name_raw":"Yf4=","type":"file"`)) {
		t.Fatalf("name_raw does not follow name: %s", data)
	}
}

// TestTreeUTF8Unchanged: a tree whose strings are UTF-8 is stored exactly
// as before raw fields existed, so unchanged directories keep their tree
// ids in existing repositories. The blob below was written by the encoder
// before this change.
func TestTreeUTF8Unchanged(t *testing.T) {
	mt := time.Date(2024, 3, 1, 10, 0, 0, 500000000, time.FixedZone("", 3600))
	tr := &Tree{Nodes: []Node{
		{Name: "caf\u00e9 \ufffd.jpg", Type: NodeFile, Mode: 0o644, UID: 33, GID: 33, User: "www-data", Group: "www-data", ModTime: mt, Size: 5, Content: []ID{{0xab}}},
		{Name: "l", Type: NodeSymlink, ModTime: mt, LinkTarget: "../x<y>", Xattrs: []Xattr{{Name: "user.\u00e9", Value: []byte("v")}}},
	}}
	const want = `{"nodes":[{"name":"café �.jpg","type":"file","mode":420,"uid":33,"gid":33,"user":"www-data","group":"www-data","mtime":"2024-03-01T10:00:00.5+01:00","size":5,"content":["ab00000000000000000000000000000000000000000000000000000000000000"]},` +
		`{"name":"l","type":"symlink","mode":0,"uid":0,"gid":0,"mtime":"2024-03-01T10:00:00.5+01:00","linktarget":"../x\u003cy\u003e","xattrs":[{"name":"user.é","value":"dg=="}]}]}`
	data, err := EncodeTree(tr)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", data, want)
	}
}

// TestTreeLegacyReplacementNames: blobs written before raw fields existed
// hold U+FFFD where the name had bad bytes; they decode as they always did.
func TestTreeLegacyReplacementNames(t *testing.T) {
	data := []byte(`{"nodes":[{"name":"a\ufffdb","type":"file","mode":0,"uid":0,"gid":0,"mtime":"0001-01-01T00:00:00Z"},{"name":"c` + "\ufffd" + `","type":"fifo","mode":0,"uid":0,"gid":0,"mtime":"0001-01-01T00:00:00Z"}]}`)
	if !checkFastMatchesUnmarshal(t, data) {
		t.Fatalf("fast path refused %s", data)
	}
	tr, err := DecodeTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Nodes[0].Name != "a\ufffdb" || tr.Nodes[1].Name != "c\ufffd" {
		t.Fatalf("names %q %q", tr.Nodes[0].Name, tr.Nodes[1].Name)
	}
	checkSameAsJSON(t, data)
}

// rawFieldCases are blobs with raw fields that DecodeTree must refuse, and
// the text the error must contain.
var rawFieldCases = []struct {
	name, data, err string
}{
	{"raw is UTF-8", `{"nodes":[{"name":"a","name_raw":"YQ==","type":"file"}]}`, `name_raw "a" is valid UTF-8`},
	{"raw is empty", `{"nodes":[{"name":"","name_raw":"","type":"file"}]}`, `name_raw "" is valid UTF-8`},
	{"raw disagrees", `{"nodes":[{"name":"b\ufffd","name_raw":"Yf4=","type":"file"}]}`, "name_raw \"a\\xfe\" does not match name \"b\ufffd\" (want \"a\ufffd\")"},
	{"raw without display", `{"nodes":[{"name_raw":"Yf4=","type":"file"}]}`, `name_raw "a\xfe" does not match name ""`},
	{"display per byte", `{"nodes":[{"name":"a\ufffd\ufffd","name_raw":"Yf7/","type":"file"}]}`, `does not match name`},
	{"raw with slash", `{"nodes":[{"name":"a/\ufffd","name_raw":"YS//","type":"file"}]}`, `invalid file name "a/\xff"`},
	{"raw with NUL", `{"nodes":[{"name":"\u0000\ufffd","name_raw":"AP8=","type":"file"}]}`, `invalid file name "\x00\xff"`},
	{"raw names unsorted", `{"nodes":[{"name":"a\ufffd","name_raw":"Yf8=","type":"file"},{"name":"a\ufffd","name_raw":"Yf4=","type":"file"}]}`, `not sorted or duplicated at "a\xfe"`},
	{"raw names duplicated", `{"nodes":[{"name":"a\ufffd","name_raw":"Yf4=","type":"file"},{"name":"a\ufffd","name_raw":"Yf4=","type":"file"}]}`, `not sorted or duplicated at "a\xfe"`},
	{"linktarget disagrees", `{"nodes":[{"name":"l","type":"symlink","linktarget":"x","linktarget_raw":"Yf4="}]}`, `linktarget_raw "a\xfe" does not match linktarget "x"`},
	{"user is UTF-8", `{"nodes":[{"name":"f","type":"file","user":"root","user_raw":"cm9vdA=="}]}`, `user_raw "root" is valid UTF-8`},
	{"group disagrees", `{"nodes":[{"name":"f","type":"file","group_raw":"/w=="}]}`, `group_raw "\xff" does not match group ""`},
	{"xattr name disagrees", `{"nodes":[{"name":"f","type":"file","xattrs":[{"name":"user.x","name_raw":"/w==","value":null}]}]}`, `xattr "user.x": name_raw "\xff" does not match name "user.x"`},
	{"bad base64", `{"nodes":[{"name":"\ufffd","name_raw":"!!","type":"file"}]}`, `illegal base64`},
}

func TestTreeRawFieldsRefused(t *testing.T) {
	for _, tc := range rawFieldCases {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.data)
			_, err := DecodeTree(data)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error containing %q", err, tc.err)
			}
			checkSameAsJSON(t, data)
		})
	}
}

// TestTreeRawFieldAccepted: the canonical blob written by hand, in another
// field order and with whitespace, decodes to the raw names.
func TestTreeRawFieldAccepted(t *testing.T) {
	data := []byte(`{"nodes": [ {"type":"file", "name_raw":"Yf4=", "name":"a\ufffd"}, {"name":"a` + "\ufffd" + `","name_raw":"Yf8=","type":"file"} ]}`)
	tr, err := DecodeTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Nodes) != 2 || tr.Nodes[0].Name != "a\xfe" || tr.Nodes[1].Name != "a\xff" {
		t.Fatalf("nodes %+v", tr.Nodes)
	}
	checkSameAsJSON(t, data)
}
