package dump

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

var digestRows = [][]byte{[]byte(`(1,'a\'b',NULL,0x00ff)`), []byte(`(2,'',NULL,'')`)}

// TestDigestSHA256Compatible pins the v1 digest of two rows to the value the previous
// release computed for them: dumps made with it must still verify.
func TestDigestSHA256Compatible(t *testing.T) {
	d, err := newDigest(DigestSHA256)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range digestRows {
		d.add(r)
	}
	if got, want := d.String(), "dad4245115e458eef081ac1aadffce995d3af8baec9300211bb823336b853ab7"; got != want || d.rows != 2 {
		t.Errorf("v1 digest = %s (%d rows), want %s (2 rows)", got, d.rows, want)
	}
}

// TestDigestXXH3 checks the v2 digest against its definition: XXH3-128 of each tuple, the
// high and low halves summed modulo 2^64, big-endian hex; independent of row order.
func TestDigestXXH3(t *testing.T) {
	var hi, lo uint64
	for _, r := range digestRows {
		h := xxh3.Hash128(r)
		hi, lo = hi+h.Hi, lo+h.Lo
	}
	want := fmt.Sprintf("%016x%016x", hi, lo)
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		var d digest // the zero value is DigestAlgorithm
		if DigestAlgorithm != DigestXXH3 {
			t.Fatalf("DigestAlgorithm = %q", DigestAlgorithm)
		}
		for _, i := range order {
			if got := d.add(digestRows[i]); got != xxh3.Hash128(digestRows[i]).Hi {
				t.Errorf("add returned %x, want the row hash's high half", got)
			}
		}
		if got := d.String(); got != want {
			t.Errorf("order %v: digest %s, want %s", order, got, want)
		}
	}
	// One changed byte, one row more or one row less changes it.
	var changed, more, less digest
	changed.add([]byte(`(1,'a\'c',NULL,0x00ff)`))
	changed.add(digestRows[1])
	more.add(digestRows[0])
	more.add(digestRows[1])
	more.add(digestRows[1])
	less.add(digestRows[0])
	for name, d := range map[string]*digest{"changed": &changed, "more": &more, "less": &less} {
		if d.String() == want {
			t.Errorf("%s rows give the same digest", name)
		}
	}
	// Lanes wrap modulo 2^64.
	var w digest
	w.lanes[0], w.lanes[1] = ^uint64(0), ^uint64(0)
	h := xxh3.Hash128(digestRows[0])
	w.add(digestRows[0])
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], h.Hi-1)
	binary.BigEndian.PutUint64(b[8:], h.Lo-1)
	if got := w.String(); got != fmt.Sprintf("%x", b) {
		t.Errorf("wrapped digest %s, want %x", got, b)
	}
}

func TestDigestUnknownAlgorithm(t *testing.T) {
	_, err := newDigest("md5-multiset-v0")
	if err == nil || !strings.Contains(err.Error(), `"md5-multiset-v0"`) || !strings.Contains(err.Error(), "shopvault version that made the dump") {
		t.Errorf("unknown algorithm: err = %v", err)
	}
	m := &Manifest{DigestAlgorithm: "md5-multiset-v0"}
	if _, err := VerifyDatabase(t.Context(), nil, m, "a", "b"); err == nil || !strings.Contains(err.Error(), "md5-multiset-v0") {
		t.Errorf("VerifyDatabase with an unknown algorithm: err = %v", err)
	}
}
