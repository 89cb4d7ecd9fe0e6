package dump

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"strings"

	"github.com/zeebo/xxh3"
)

// kind says how a column's text-protocol value becomes an SQL literal.
type kind uint8

const (
	kindString kind = iota // quoted, backslash-escaped (character data, dates, JSON, ENUM, ...)
	kindNumber             // verbatim (integers, DECIMAL, FLOAT, DOUBLE): exact as the server prints it
	kindHex                // 0x... (binary strings, BLOBs, BIT, geometry): the bytes exactly
)

// columnKind classifies a column from information_schema.COLUMNS' DATA_TYPE and
// CHARACTER_SET_NAME.
func columnKind(dataType, charset string) kind {
	switch strings.ToLower(dataType) {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint",
		"decimal", "numeric", "float", "double", "real", "double precision", "year":
		return kindNumber
	case "bit", "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
		"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
		"multipolygon", "geometrycollection":
		return kindHex
	}
	if strings.EqualFold(charset, "binary") {
		return kindHex
	}
	return kindString
}

// escapeTable marks the bytes that need a backslash escape inside a quoted literal, with
// the character that follows the backslash (as mysql_real_escape_string).
var escapeTable = func() (t [256]byte) {
	t[0] = '0'
	t['\n'] = 'n'
	t['\r'] = 'r'
	t['\\'] = '\\'
	t['\''] = '\''
	t['"'] = '"'
	t[0x1a] = 'Z'
	return t
}()

// appendValue appends v as an SQL literal of kind k. A nil v is NULL; an empty non-nil v is
// the empty string (or ” for a binary column).
func appendValue(buf, v []byte, k kind) []byte {
	if v == nil {
		return append(buf, "NULL"...)
	}
	switch k {
	case kindNumber:
		if len(v) == 0 {
			return append(buf, "''"...)
		}
		return append(buf, v...)
	case kindHex:
		if len(v) == 0 {
			return append(buf, "''"...)
		}
		buf = append(buf, '0', 'x')
		return hex.AppendEncode(buf, v)
	}
	buf = append(buf, '\'')
	start := 0
	for i, c := range v {
		if e := escapeTable[c]; e != 0 {
			buf = append(buf, v[start:i]...)
			buf = append(buf, '\\', e)
			start = i + 1
		}
	}
	buf = append(buf, v[start:]...)
	return append(buf, '\'')
}

// appendIdent appends a backquoted identifier.
func appendIdent(buf []byte, name string) []byte {
	buf = append(buf, '`')
	for i := 0; i < len(name); i++ {
		if name[i] == '`' {
			buf = append(buf, '`')
		}
		buf = append(buf, name[i])
	}
	return append(buf, '`')
}

// quoteIdent returns a backquoted identifier.
func quoteIdent(name string) string { return string(appendIdent(nil, name)) }

// quoteString returns a quoted, escaped SQL string literal.
func quoteString(s string) string { return string(appendValue(nil, []byte(s), kindString)) }

// The digest algorithms (Manifest.DigestAlgorithm). Each encodes a row as the SQL tuple
// that the dump writes for it, e.g. `(1,'a\'b',NULL,0x00ff)` (generated columns excluded,
// session time_zone '+00:00', names utf8mb4), hashes it, and sums the row hashes lane-wise
// modulo 2^64, written as big-endian words in hex. The sum makes a digest independent of row
// order, so it can be recomputed without ORDER BY and for tables without any key.
//
// "xxh3-multiset-v2": XXH3-128 of each tuple, two lanes (high, low), 32 hex digits. What a
// digest has to catch is a row lost, added or changed between the dump and a load, which any
// 128-bit hash detects but for a 2^-128 chance; it is no defence against someone who can
// write the repository or answer for the target server, who could produce the matching rows
// or digest whatever the hash (the repository's own encryption and blob hashes are that
// defence). XXH3 hashes a typical row in 14 ns where SHA-256 takes 160 ns, on every row of
// every dump and every verified load.
//
// "sha256-multiset-v1": SHA-256 of each tuple, four lanes, 64 hex digits (dumps before v2;
// still verified).
const (
	DigestXXH3   = "xxh3-multiset-v2"
	DigestSHA256 = "sha256-multiset-v1"
)

// DigestAlgorithm is the algorithm of new dumps.
const DigestAlgorithm = DigestXXH3

// digest accumulates a multiset digest of row tuples. The zero value uses DigestAlgorithm.
type digest struct {
	sha   bool // DigestSHA256
	lanes [4]uint64
	rows  int64
}

// newDigest returns an empty digest of the named algorithm.
func newDigest(algorithm string) (digest, error) {
	switch algorithm {
	case DigestXXH3:
		return digest{}, nil
	case DigestSHA256:
		return digest{sha: true}, nil
	}
	return digest{}, fmt.Errorf("digest algorithm %q is not supported (this version knows %q and %q): load it with the shopvault version that made the dump", algorithm, DigestXXH3, DigestSHA256)
}

// add adds one row tuple and returns 64 bits of its hash (used also for statement
// boundaries).
func (d *digest) add(tuple []byte) uint64 {
	d.rows++
	if d.sha {
		h := sha256.Sum256(tuple)
		for i := range d.lanes {
			d.lanes[i] += binary.BigEndian.Uint64(h[i*8:])
		}
		return binary.BigEndian.Uint64(h[:8])
	}
	h := xxh3.Hash128(tuple)
	d.lanes[0] += h.Hi
	d.lanes[1] += h.Lo
	return h.Hi
}

func (d *digest) String() string {
	n := 2
	if d.sha {
		n = 4
	}
	var b [32]byte
	for i := range n {
		binary.BigEndian.PutUint64(b[i*8:], d.lanes[i])
	}
	return hex.EncodeToString(b[:n*8])
}

// indexAny4 returns the index of the first byte of s that is a, b, c or d, or len(s). It
// tests eight bytes at a time (SWAR): the SQL scanners spend most of their time in long
// runs of plain string content.
func indexAny4(s []byte, a, b, c, d byte) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		v := binary.LittleEndian.Uint64(s[i:])
		if m := hasByte(v, a) | hasByte(v, b) | hasByte(v, c) | hasByte(v, d); m != 0 {
			// The lowest flagged byte of each mask is a real match (a false flag needs
			// a borrow from a real match below it), so the lowest of all is too.
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(s); i++ {
		if x := s[i]; x == a || x == b || x == c || x == d {
			return i
		}
	}
	return len(s)
}

// hasByte flags (with its high bit) each byte of v that equals x, and possibly bytes
// above a flagged one.
func hasByte(v uint64, x byte) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := v ^ (ones * uint64(x))
	return (y - ones) &^ y & highs
}
