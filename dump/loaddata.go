package dump

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/go-sql-driver/mysql"
)

// Loading rows with LOAD DATA LOCAL INFILE.
//
// The server parses an INSERT's VALUES list about as slowly as mariadb-dump's own, while
// LOAD DATA's tab-separated rows cost it far less. So Load turns the dump's INSERT statements
// back into LOAD DATA rows on the fly: insertConverter parses the VALUES tuples that the
// dump's own encoder writes (a small, known grammar) and writes each row in LOAD DATA's
// default text format; the rows reach the server through go-sql-driver/mysql's
// "Reader::<name>" local infile handler, one LOAD DATA per run of INSERTs with the same
// column list. Any statement the converter does not understand exactly is executed as it is
// (never guessed); the digests verify every load anyway.

// loadDataFields is the format clause of our LOAD DATA statements (the server's defaults,
// spelled out).
const loadDataFields = " CHARACTER SET " + SessionCharset + " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"

// insertConverter converts the INSERT statements of one table into LOAD DATA rows.
type insertConverter struct {
	table string
	// kinds maps the table's column names (in the target database) to their kind.
	kinds map[string]kind
	// autoInc is the table's AUTO_INCREMENT column ("" if none).
	autoInc string
	// header is the statement prefix "INSERT INTO `t` (`a`,`b`) VALUES" of the current run.
	header []byte
	cols   []kind
	// zeroCheck is the index in cols of the AUTO_INCREMENT column when the statement also
	// has a SET clause, else -1. MariaDB (10.11) forgets NO_AUTO_VALUE_ON_ZERO for rows of a
	// LOAD DATA with a SET clause and gives a 0 in that column a new number: rows with a
	// zero there are loaded as INSERTs.
	zeroCheck int
	// load is the LOAD DATA statement (without the file name) for header.
	load string
}

// setHeader parses the column list of an INSERT statement of the dump's shape
// ("INSERT INTO `t` (`a`,...) VALUES ...") into ic.header/cols/load. It returns false for any
// other statement (another table, no column list, an unknown column).
func (ic *insertConverter) setHeader(stmt []byte) bool {
	p := []byte("INSERT INTO ")
	if !bytes.HasPrefix(stmt, p) {
		return false
	}
	s := stmt[len(p):]
	name, n, ok := parseIdent(s)
	if !ok || name != ic.table {
		return false
	}
	s = s[n:]
	if !bytes.HasPrefix(s, []byte(" (")) {
		return false
	}
	s = s[2:]
	var cols []kind
	var list, set []byte
	autoInc := -1
	for i := 0; ; i++ {
		col, n, ok := parseIdent(s)
		if !ok {
			return false
		}
		k, ok := ic.kinds[col]
		if !ok {
			return false
		}
		if i > 0 {
			list = append(list, ',')
		}
		if k == kindHex {
			// The column's bytes travel as hex text and are decoded by the server.
			v := fmt.Sprintf("@h%d", i)
			list = append(list, v...)
			if len(set) == 0 {
				set = append(set, " SET "...)
			} else {
				set = append(set, ", "...)
			}
			set = appendIdent(set, col)
			set = append(set, " = UNHEX("...)
			set = append(set, v...)
			set = append(set, ')')
		} else {
			list = appendIdent(list, col)
		}
		if col == ic.autoInc {
			autoInc = i
		}
		cols = append(cols, k)
		s = s[n:]
		if len(s) > 0 && s[0] == ',' {
			s = s[1:]
			continue
		}
		break
	}
	if !bytes.HasPrefix(s, []byte(") VALUES")) {
		return false
	}
	hl := len(stmt) - len(s) + len(") VALUES")
	ic.header = append(ic.header[:0], stmt[:hl]...)
	ic.cols = cols
	ic.zeroCheck = -1
	if len(set) > 0 {
		ic.zeroCheck = autoInc
	}
	ic.load = " INTO TABLE " + quoteIdent(ic.table) + loadDataFields + " (" + string(list) + ")" + string(set)
	return true
}

// parseIdent parses a backquoted identifier at the start of s and returns it unquoted with
// the number of bytes it took.
func parseIdent(s []byte) (string, int, bool) {
	if len(s) < 2 || s[0] != '`' {
		return "", 0, false
	}
	var name []byte
	for i := 1; i < len(s); i++ {
		if s[i] != '`' {
			name = append(name, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '`' {
			name = append(name, '`')
			i++
			continue
		}
		if len(name) == 0 {
			return "", 0, false
		}
		return string(name), i + 1, true
	}
	return "", 0, false
}

// convert appends the rows of stmt, which must start with ic.header, to buf in LOAD DATA
// format and returns the extended buffer and the number of rows. ok is false if stmt is not
// exactly in the dump's grammar; buf is then returned unchanged in length.
func (ic *insertConverter) convert(buf, stmt []byte) (out []byte, rows int, ok bool) {
	if !bytes.HasPrefix(stmt, ic.header) {
		return buf, 0, false
	}
	orig := len(buf)
	s := stmt[len(ic.header):]
	i := skipSpace(s, 0)
	for {
		if i >= len(s) || s[i] != '(' {
			return buf[:orig], 0, false
		}
		i++
		for c, k := range ic.cols {
			if c > 0 {
				if i >= len(s) || s[i] != ',' {
					return buf[:orig], 0, false
				}
				i++
				buf = append(buf, '\t')
			}
			var good bool
			vs := len(buf)
			buf, i, good = convertValue(buf, s, i, k)
			if !good || c == ic.zeroCheck && !nonZero(buf[vs:]) {
				return buf[:orig], 0, false
			}
		}
		if i >= len(s) || s[i] != ')' {
			return buf[:orig], 0, false
		}
		i++
		buf = append(buf, '\n')
		rows++
		i = skipSpace(s, i)
		if i == len(s) {
			return buf, rows, true
		}
		if s[i] != ',' {
			return buf[:orig], 0, false
		}
		i = skipSpace(s, i+1)
	}
}

// nonZero reports whether a converted number has a digit other than 0 (\N, an empty value
// or 0 in any spelling are "zero": the server would generate an AUTO_INCREMENT value for them
// in a LOAD DATA with a SET clause).
func nonZero(v []byte) bool {
	for _, c := range v {
		if c >= '1' && c <= '9' {
			return true
		}
	}
	return false
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// isHexDigit reports whether c is 0-9, a-f or A-F.
func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// loadDataEscape maps the byte after a backslash in the dump's quoted strings (the escapes
// appendValue writes) to its LOAD DATA form; 0 means "not one of ours".
var loadDataEscape = func() (t [256]string) {
	t['0'] = `\0`
	t['n'] = `\n`
	t['r'] = `\r`
	t['\\'] = `\\`
	t['\''] = `'`
	t['"'] = `"`
	t['Z'] = `\Z`
	return t
}()

// convertValue converts the value at s[i:] of a column of kind k. Accepted, as the dump
// writes them: NULL; ” for every kind; a bare number for kindNumber; 0x followed by an
// even number of hex digits for kindHex; a quoted string with the dump's escapes for
// kindString.
func convertValue(buf, s []byte, i int, k kind) ([]byte, int, bool) {
	if i >= len(s) {
		return buf, i, false
	}
	switch c := s[i]; {
	case c == 'N':
		if bytes.HasPrefix(s[i:], []byte("NULL")) {
			return append(buf, '\\', 'N'), i + 4, true
		}
		return buf, i, false
	case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
		// '' (empty); a doubled quote inside a string is not our grammar.
		if i+2 < len(s) && s[i+2] == '\'' {
			return buf, i, false
		}
		return buf, i + 2, true
	case c == '\'':
		if k != kindString {
			return buf, i, false
		}
		i++
		start := i
		for {
			i += indexAny4(s[i:], '\'', '\\', '\t', '\n')
			if i >= len(s) {
				break
			}
			switch s[i] {
			case '\'':
				buf = append(buf, s[start:i]...)
				i++
				if i < len(s) && s[i] == '\'' {
					return buf, i, false
				}
				return buf, i, true
			case '\\':
				buf = append(buf, s[start:i]...)
				if i+1 >= len(s) {
					return buf, i, false
				}
				e := loadDataEscape[s[i+1]]
				if e == "" {
					return buf, i, false
				}
				buf = append(buf, e...)
				i += 2
				start = i
			case '\t':
				buf = append(buf, s[start:i]...)
				buf = append(buf, '\\', 't')
				i++
				start = i
			case '\n':
				buf = append(buf, s[start:i]...)
				buf = append(buf, '\\', 'n')
				i++
				start = i
			default: // not reached: indexAny4 stops only at the four bytes above
				i++
			}
		}
		return buf, i, false
	case c == '0' && k == kindHex:
		if i+1 >= len(s) || s[i+1] != 'x' {
			return buf, i, false
		}
		j := i + 2
		for j < len(s) && isHexDigit(s[j]) {
			j++
		}
		if n := j - (i + 2); n == 0 || n%2 != 0 {
			return buf, i, false
		}
		return append(buf, s[i+2:j]...), j, true
	case k == kindNumber && (c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.'):
		j := i
		for j < len(s) {
			b := s[j]
			if b >= '0' && b <= '9' || b == '-' || b == '+' || b == '.' || b == 'e' || b == 'E' {
				j++
				continue
			}
			break
		}
		return append(buf, s[i:j]...), j, true
	}
	return buf, i, false
}

// infileReader feeds one LOAD DATA statement: it reads statements from sr, converts those
// with the converter's header and stops (io.EOF) at the first other statement, which it
// keeps in pending, or at the end of the stream (done).
type infileReader struct {
	sr      *StatementReader
	ic      *insertConverter
	buf     []byte
	off     int
	pending []byte // the statement that ended this LOAD DATA (a copy), nil if none
	done    bool   // the stream ended
	stmts   int64  // INSERT statements converted
	rows    int64
	err     error
}

func (r *infileReader) Read(p []byte) (int, error) {
	for r.off >= len(r.buf) {
		if r.err != nil {
			return 0, r.err
		}
		if r.done || r.pending != nil {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		stmt, err := r.sr.Next()
		if err == io.EOF {
			r.done = true
			continue
		}
		if err != nil {
			r.err = fmt.Errorf("line %d: %w", r.sr.Line(), err)
			continue
		}
		stmt = stmt[skipSpace(stmt, 0):]
		var rows int
		var ok bool
		r.buf, rows, ok = r.ic.convert(r.buf, stmt)
		if !ok {
			r.pending = append([]byte(nil), stmt...)
			continue
		}
		r.stmts++
		r.rows += int64(rows)
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// runLoadData runs one LOAD DATA LOCAL statement on conn reading r.
func runLoadData(ctx context.Context, conn *sql.Conn, r *infileReader) error {
	// The driver's registry is process-wide: r's address keeps the name unique while it is
	// registered.
	name := fmt.Sprintf("shopvault-load-%p", r)
	mysql.RegisterReaderHandler(name, func() io.Reader { return r })
	defer mysql.DeregisterReaderHandler(name)
	_, err := conn.ExecContext(ctx, "LOAD DATA LOCAL INFILE "+quoteString("Reader::"+name)+r.ic.load)
	if r.err != nil {
		return r.err
	}
	return err
}

// loadTableStream loads a table's stream on conn in one transaction: INSERTs of the dump's
// shape as LOAD DATA LOCAL, every other statement (and any INSERT the converter does not
// understand) executed as it is. rewrite (if not nil) may change the statements executed.
// On an error the transaction is rolled back.
func (l *loader) loadTableStream(ctx context.Context, conn *sql.Conn, t Table, rewrite func(string) string) (err error) {
	name := t.Stream
	rc, err := l.src.OpenStream(ctx, l.from, name)
	if err != nil {
		return fmt.Errorf("load: open stream %s/%s: %w", l.from, name, err)
	}
	defer rc.Close()
	if _, err := conn.ExecContext(ctx, "SET autocommit = 0"); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		if err != nil {
			_, _ = conn.ExecContext(bg, "ROLLBACK")
		}
		_, _ = conn.ExecContext(bg, "SET autocommit = 1")
	}()
	cr := &countReader{r: rc}
	sr := NewStatementReader(cr)
	ops := tableOps{
		columns: func(ic *insertConverter) error {
			cols, err := readColumns(ctx, conn, l.into, t.Name)
			if err != nil {
				return err
			}
			ic.kinds = map[string]kind{}
			for _, c := range cols[t.Name] {
				if !c.generated {
					ic.kinds[c.name] = c.k
				}
			}
			q := "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = " + quoteString(l.into) +
				" AND TABLE_NAME = " + quoteString(t.Name) + " AND EXTRA LIKE '%auto_increment%'"
			if err := conn.QueryRowContext(ctx, q).Scan(&ic.autoInc); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			return nil
		},
		exec: func(q string) error {
			if rewrite != nil {
				q = rewrite(q)
			}
			_, err := conn.ExecContext(ctx, q)
			return err
		},
		loadData: func(r *infileReader) error { return runLoadData(ctx, conn, r) },
	}
	n, fast, err := ops.run(sr, t.Name)
	if err != nil {
		return fmt.Errorf("load: stream %s/%s: %w", l.from, name, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("load: stream %s/%s: commit: %w", l.from, name, err)
	}
	l.mu.Lock()
	l.rep.Statements += n
	l.rep.LoadDataStatements += fast
	l.rep.Bytes += cr.n
	l.mu.Unlock()
	return nil
}

// tableOps are the server operations of loading one table's stream.
type tableOps struct {
	// columns sets the converter's column kinds and AUTO_INCREMENT column from the table
	// (called once, at the first INSERT, when the table exists).
	columns func(ic *insertConverter) error
	// exec executes a statement as it is.
	exec func(q string) error
	// loadData runs one LOAD DATA LOCAL reading r to its end.
	loadData func(r *infileReader) error
}

// run loads the statements of sr for table: runs of convertible INSERTs through loadData,
// everything else through exec. It returns the number of statements and how many of them
// went through loadData.
func (ops tableOps) run(sr *StatementReader, table string) (n, fast int64, err error) {
	ic := &insertConverter{table: table}
	var pending []byte
	for {
		var stmt []byte
		if pending != nil {
			stmt, pending = pending, nil
		} else {
			stmt, err = sr.Next()
			if err == io.EOF {
				return n, fast, nil
			}
			if err != nil {
				return n, fast, err
			}
		}
		stmt = stmt[skipSpace(stmt, 0):]
		if ic.kinds == nil && bytes.HasPrefix(stmt, []byte("INSERT INTO ")) {
			// The table exists now: its column kinds say how each value must be loaded.
			if err := ops.columns(ic); err != nil {
				return n, fast, fmt.Errorf("table %s: %w", quoteIdent(table), err)
			}
		}
		if ic.kinds != nil && ic.setHeader(stmt) {
			r := &infileReader{sr: sr, ic: ic}
			var rows int
			var ok bool
			if r.buf, rows, ok = ic.convert(r.buf, stmt); ok {
				r.stmts, r.rows = 1, int64(rows)
				if err := ops.loadData(r); err != nil {
					return n, fast, fmt.Errorf("line %d: LOAD DATA LOCAL: %w", sr.Line(), err)
				}
				n += r.stmts
				fast += r.stmts
				if r.pending == nil {
					return n, fast, nil // the stream ended
				}
				pending = r.pending
				continue
			}
		}
		if err := ops.exec(string(stmt)); err != nil {
			return n, fast, fmt.Errorf("line %d: %w", sr.Line(), err)
		}
		n++
	}
}
