package dump

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
)

// decodeLoadData parses LOAD DATA rows (FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
// TERMINATED BY '\n') the way the server does; nil stands for \N.
func decodeLoadData(t *testing.T, data []byte) [][][]byte {
	t.Helper()
	var rows [][][]byte
	var row [][]byte
	var f []byte
	isNull := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '\\':
			i++
			if i == len(data) {
				t.Fatalf("backslash at end of data")
			}
			switch e := data[i]; e {
			case '0':
				f = append(f, 0)
			case 'n':
				f = append(f, '\n')
			case 'r':
				f = append(f, '\r')
			case 't':
				f = append(f, '\t')
			case 'Z':
				f = append(f, 0x1a)
			case 'N':
				isNull = true
			default:
				f = append(f, e)
			}
		case '\t', '\n':
			if isNull {
				row = append(row, nil)
			} else {
				row = append(row, append([]byte{}, f...))
			}
			f, isNull = f[:0], false
			if c == '\n' {
				rows = append(rows, row)
				row = nil
			}
		default:
			f = append(f, c)
		}
	}
	if len(row) > 0 || len(f) > 0 {
		t.Fatalf("data does not end with a newline")
	}
	return rows
}

func testConverter() *insertConverter {
	return &insertConverter{table: "t`x", kinds: map[string]kind{"s": kindString, "n": kindNumber, "h": kindHex, "g": kindString}}
}

func TestInsertConverterRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	randBytes := func() []byte {
		switch rng.Intn(6) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.Intn(40))
		for i := range b {
			if rng.Intn(3) == 0 {
				special := "\x00\n\r\t\\'\"\x1a,()N"
				b[i] = special[rng.Intn(len(special))]
			} else {
				b[i] = byte(rng.Intn(256))
			}
		}
		return b
	}
	numbers := []string{"0", "-1", "18446744073709551615", "-9223372036854775808", "3.40282e+38", "-2.2250738585072014e-308", "123.450000", "1e-07"}
	ic := testConverter()
	stmt := []byte("INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n")
	var want [][][]byte
	for r := 0; r < 200; r++ {
		if r > 0 {
			stmt = append(stmt, ",\n"...)
		}
		s, h := randBytes(), randBytes()
		var n []byte
		switch rng.Intn(4) {
		case 0:
		case 1:
			n = []byte{}
		default:
			n = []byte(numbers[rng.Intn(len(numbers))])
		}
		stmt = append(stmt, '(')
		stmt = appendValue(stmt, s, kindString)
		stmt = append(stmt, ',')
		stmt = appendValue(stmt, n, kindNumber)
		stmt = append(stmt, ',')
		stmt = appendValue(stmt, h, kindHex)
		stmt = append(stmt, ')')
		// What the server computes: the string's bytes, the number's text, UNHEX of the hex text.
		var hx []byte
		if h != nil {
			hx = []byte(hex.EncodeToString(h))
		}
		want = append(want, [][]byte{s, n, hx})
	}
	if !ic.setHeader(stmt) {
		t.Fatalf("setHeader rejected %.80q", stmt)
	}
	if want := " INTO TABLE `t``x`" + loadDataFields + " (`s`,`n`,@h2) SET `h` = UNHEX(@h2)"; ic.load != want {
		t.Errorf("load clause = %q, want %q", ic.load, want)
	}
	out, rows, ok := ic.convert([]byte("keep"), stmt)
	if !ok || rows != len(want) {
		t.Fatalf("convert: ok %v rows %d, want %d rows", ok, rows, len(want))
	}
	if !bytes.HasPrefix(out, []byte("keep")) {
		t.Fatalf("convert dropped the buffer's content")
	}
	got := decodeLoadData(t, out[4:])
	if len(got) != len(want) {
		t.Fatalf("%d rows decoded, want %d", len(got), len(want))
	}
	for i := range want {
		for c := range want[i] {
			w, g := want[i][c], got[i][c]
			if (w == nil) != (g == nil) || !bytes.Equal(w, g) {
				t.Fatalf("row %d column %d: got %q, want %q", i, c, g, w)
			}
		}
	}
}

func TestInsertConverterRejects(t *testing.T) {
	ic := testConverter()
	head := "INSERT INTO `t``x` (`s`,`n`,`h`) VALUES "
	if !ic.setHeader([]byte(head + "(NULL,NULL,NULL)")) {
		t.Fatal("setHeader rejected a good header")
	}
	for _, body := range []string{
		`('a''b',1,NULL)`,    // doubled quote
		`('a\tb',1,NULL)`,    // an escape the dump never writes (\t means tab here)
		`('a\%b',1,NULL)`,    // \% stays two characters in SQL: not ours
		`('a',1,b'01')`,      // bit literal
		`(0x61,1,NULL)`,      // hex into a string column
		`('a','1',NULL)`,     // quoted number
		`('a',1,'\0')`,       // quoted bytes into a binary column
		`('a',1,0xabc)`,      // odd hex
		`('a',1,0x)`,         // empty hex
		`('a',1,POINT(1,2))`, // function call
		`('a',1)`,            // too few values
		`('a',1,NULL,NULL)`,  // too many values
		`('a',1,NULL) ON DUPLICATE KEY UPDATE n=1`,
		`('a',1,NULL),`,            // dangling comma
		`('a',1,NULL)('b',2,NULL)`, // missing comma
		`('a,1,NULL)`,              // unterminated string
		`('a',DEFAULT,NULL)`,       // DEFAULT
		`('a',NULLX,NULL)`,         // not NULL
		`('a',@v,NULL)`,            // variable
		"('a',1,NULL)\n;",          // trailing text
	} {
		if out, _, ok := ic.convert(nil, []byte(head+body)); ok {
			t.Errorf("convert accepted %s: %q", body, out)
		}
	}
	// MariaDB gives a 0 in the AUTO_INCREMENT column a new number in a LOAD DATA with a SET
	// clause (here: for the hex column): such rows must go as INSERTs.
	ai := testConverter()
	ai.autoInc = "n"
	for _, tc := range []struct {
		stmt string
		ok   bool
	}{
		{head + "('a',0,NULL)", false},
		{head + "('a',1,NULL),('b',0,NULL)", false},
		{head + "('a',NULL,NULL)", false},
		{head + "('a',10,0x00)", true},
		{"INSERT INTO `t``x` (`s`,`n`) VALUES ('a',0)", true}, // no SET clause
	} {
		if !ai.setHeader([]byte(tc.stmt)) {
			t.Fatalf("setHeader rejected %s", tc.stmt)
		}
		if _, _, ok := ai.convert(nil, []byte(tc.stmt)); ok != tc.ok {
			t.Errorf("auto-increment column: convert(%s) ok = %v, want %v", tc.stmt, ok, tc.ok)
		}
	}
	for _, stmt := range []string{
		"INSERT INTO `other` (`s`) VALUES ('a')",
		"INSERT INTO `t``x` VALUES ('a',1,NULL)",
		"INSERT INTO `t``x` (`s`,`unknown`) VALUES ('a',1)",
		"INSERT IGNORE INTO `t``x` (`s`) VALUES ('a')",
		"REPLACE INTO `t``x` (`s`) VALUES ('a')",
		"INSERT INTO `t``x` (`s`) SELECT 'a'",
		"INSERT INTO `t``x` (`s`",
	} {
		if ic := testConverter(); ic.setHeader([]byte(stmt)) {
			t.Errorf("setHeader accepted %q", stmt)
		}
	}
	// A statement with another column list does not match the current header.
	if _, _, ok := ic.convert(nil, []byte("INSERT INTO `t``x` (`s`) VALUES ('a')")); ok {
		t.Error("convert accepted a statement with another header")
	}
}

func FuzzInsertConverter(f *testing.F) {
	f.Add([]byte(`('a\'b',-1.5e+3,0x00ff),(NULL,'','')`))
	f.Add([]byte(`('',NULL,NULL)`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ic := testConverter()
		stmt := append([]byte("INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n"), body...)
		if !ic.setHeader(stmt) {
			t.Fatal("setHeader rejected the header")
		}
		out, rows, ok := ic.convert(nil, stmt)
		if !ok {
			if len(out) != 0 {
				t.Fatalf("rejected input left %q in the buffer", out)
			}
			return
		}
		got := decodeLoadData(t, out)
		if len(got) != rows {
			t.Fatalf("%d rows decoded, convert said %d", len(got), rows)
		}
		for _, r := range got {
			if len(r) != 3 {
				t.Fatalf("row with %d fields: %q", len(r), out)
			}
		}
		if strings.Count(string(out), "\n") != rows {
			t.Fatalf("raw newline inside a field: %q", out)
		}
	})
}

// TestTableOpsRun checks how a table stream is split between LOAD DATA and plain
// statements: runs of convertible INSERTs with one column list share a LOAD DATA, anything
// else (including an INSERT the converter does not understand) is executed as it is, in
// stream order.
func TestTableOpsRun(t *testing.T) {
	script := "SET NAMES utf8mb4;\nDROP TABLE IF EXISTS `t``x`;\nCREATE TABLE `t``x` (s TEXT, n INT, h BLOB);\n" +
		"INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n('a',1,0x61),\n('b\\n',2,NULL);\n" +
		"INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n('c',3,'');\n" +
		"INSERT INTO `t``x` (`s`,`n`,`h`) VALUES\n('tab\\t',4,NULL);\n" + // not our escape: as it is
		"INSERT INTO `t``x` (`s`,`n`) VALUES\n('d',5);\n" + // another column list: a new LOAD DATA
		"INSERT INTO `t``x` (`s`,`n`) VALUES\n('e',6);\n" +
		"-- end\n"
	var log []string
	columnsCalls := 0
	ops := tableOps{
		columns: func(ic *insertConverter) error {
			columnsCalls++
			ic.kinds = map[string]kind{"s": kindString, "n": kindNumber, "h": kindHex}
			return nil
		},
		exec: func(q string) error {
			log = append(log, "exec "+strings.SplitN(q, "\n", 2)[0])
			return nil
		},
		loadData: func(r *infileReader) error {
			b, err := io.ReadAll(r)
			log = append(log, fmt.Sprintf("load%s %q", r.ic.load[strings.Index(r.ic.load, " ("):], b))
			return err
		},
	}
	n, fast, err := ops.run(NewStatementReader(strings.NewReader(script)), "t`x")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"exec SET NAMES utf8mb4",
		"exec DROP TABLE IF EXISTS `t``x`",
		"exec CREATE TABLE `t``x` (s TEXT, n INT, h BLOB)",
		"load (`s`,`n`,@h2) SET `h` = UNHEX(@h2) \"a\\t1\\t61\\nb\\\\n\\t2\\t\\\\N\\nc\\t3\\t\\n\"",
		"exec INSERT INTO `t``x` (`s`,`n`,`h`) VALUES",
		"load (`s`,`n`) \"d\\t5\\ne\\t6\\n\"",
	}
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("operations:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
	if n != 8 || fast != 4 || columnsCalls != 1 {
		t.Errorf("n = %d, fast = %d, columns called %d times; want 8, 4, 1", n, fast, columnsCalls)
	}

	// A failing LOAD DATA or statement stops the load with the line.
	ops.loadData = func(r *infileReader) error { return errors.New("boom") }
	if _, _, err := ops.run(NewStatementReader(strings.NewReader(script)), "t`x"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing LOAD DATA: err = %v", err)
	}
}
