package dump

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"testing"
)

// benchStream is a table stream of the dump's shape (ps_connections-like rows: integers, a
// datetime, a URL with the odd escape), about 8 MiB.
func benchStream() []byte {
	var b bytes.Buffer
	for s := 0; s < 600; s++ {
		b.WriteString("INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n")
		for r := 0; r < 130; r++ {
			if r > 0 {
				b.WriteString(",\n")
			}
			id := s*130 + r
			fmt.Fprintf(&b, "('2024-03-%02d 12:%02d:%02d https://www.example.com/category/%d-product-name?utm_source=news\\'letter&id=%d',%d,NULL)",
				id%28+1, id%60, id%60, id%977, id, 2130706433+id)
		}
		b.WriteString(";\n")
	}
	return b.Bytes()
}

// BenchmarkTableStreamToLoadData measures splitting a table stream into statements and
// converting them to LOAD DATA rows (the client's side of a load, without the repository).
func BenchmarkTableStreamToLoadData(b *testing.B) {
	data := benchStream()
	b.SetBytes(int64(len(data)))
	ic := testConverter()
	var out []byte
	for b.Loop() {
		sr := NewStatementReader(bytes.NewReader(data))
		for {
			stmt, err := sr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			stmt = stmt[skipSpace(stmt, 0):]
			if !ic.setHeader(stmt) {
				b.Fatal("setHeader rejected the header")
			}
			var ok bool
			if out, _, ok = ic.convert(out[:0], stmt); !ok {
				b.Fatal("convert rejected a statement")
			}
		}
	}
}

// naiveIndexAny4 is indexAny4 byte by byte.
func naiveIndexAny4(s []byte, a, b, c, d byte) int {
	for i, x := range s {
		if x == a || x == b || x == c || x == d {
			return i
		}
	}
	return len(s)
}

func TestIndexAny4(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	// Bytes around the SWAR trick's edges: the targets, their neighbours, 0x00, 0x7f-0x81, 0xff.
	alphabet := []byte{'\'', '\\', '\t', '\n', '&', '[', 0x08, 0x0b, 0x00, 0x7f, 0x80, 0x81, 0xa7, 0xdc, 0xff, 'a'}
	for n := 0; n < 20000; n++ {
		s := make([]byte, rng.Intn(40))
		for i := range s {
			if rng.Intn(4) == 0 {
				s[i] = alphabet[rng.Intn(len(alphabet))]
			} else {
				s[i] = byte(rng.Intn(256))
			}
		}
		for _, set := range [][4]byte{{'\'', '\\', '\t', '\n'}, {'`', '`', '\n', '`'}, {0x00, 0xff, 0x80, 0x7f}} {
			got := indexAny4(s, set[0], set[1], set[2], set[3])
			if want := naiveIndexAny4(s, set[0], set[1], set[2], set[3]); got != want {
				t.Fatalf("indexAny4(%q, %q) = %d, want %d", s, set, got, want)
			}
		}
	}
}

func FuzzIndexAny4(f *testing.F) {
	f.Add([]byte("abc'def\\ghi\tjkl\nmno"), byte('\''), byte('\\'), byte('\t'), byte('\n'))
	f.Add([]byte("\x00\x80\xff\x7f\x01\x81\xfe\x00"), byte(0), byte(0x80), byte(0xff), byte(0x7f))
	f.Fuzz(func(t *testing.T, s []byte, a, b, c, d byte) {
		if got, want := indexAny4(s, a, b, c, d), naiveIndexAny4(s, a, b, c, d); got != want {
			t.Fatalf("indexAny4(%q, %q%q%q%q) = %d, want %d", s, a, b, c, d, got, want)
		}
	})
}
