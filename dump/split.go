package dump

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxStatementSize bounds one statement read by a StatementReader.
const MaxStatementSize = 1 << 30

// ErrStatementTooLong is returned for a statement longer than MaxStatementSize.
var ErrStatementTooLong = errors.New("sql statement too long")

type splitState uint8

const (
	stNormal splitState = iota
	stSingle
	stDouble
	stBacktick
	stLineComment
	stBlockComment
)

// StatementReader splits an SQL script into statements the way the stock mariadb client
// does: statements end at the current delimiter (";" until a "DELIMITER x" line changes it)
// outside quotes ('...', "...", `...`) and comments (-- , #, /* */); statements that are
// only comments or white space are skipped; the last statement needs no delimiter.
type StatementReader struct {
	r     io.Reader
	buf   []byte
	start int // beginning of the current statement in buf
	i     int // scan position
	end   int // end of valid data in buf
	eof   bool
	err   error
	delim []byte
	state splitState
	// hasContent is true once the current statement has something besides space/comments.
	hasContent bool
	line       int // line number of the scan position (1-based), for errors
	// special marks bytes the normal state must look at (quotes, comment starts, newline,
	// the delimiter's first byte); others are skipped fast.
	special [256]bool
}

func (s *StatementReader) setDelim(d []byte) {
	s.delim = append([]byte(nil), d...)
	s.special = [256]bool{}
	for _, c := range []byte("'\"`#-/\n") {
		s.special[c] = true
	}
	s.special[s.delim[0]] = true
}

// NewStatementReader returns a StatementReader reading r.
func NewStatementReader(r io.Reader) *StatementReader {
	s := &StatementReader{r: r, buf: make([]byte, 64<<10), line: 1}
	s.setDelim([]byte(";"))
	return s
}

// Line returns the current line number (for error messages).
func (s *StatementReader) Line() int { return s.line }

// fill reads more data, compacting and growing the buffer; false at EOF or error.
func (s *StatementReader) fill() bool {
	if s.eof || s.err != nil {
		return false
	}
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		s.i -= s.start
		s.end = n
		s.start = 0
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= MaxStatementSize {
			s.err = fmt.Errorf("line %d: %w (more than %d bytes)", s.line, ErrStatementTooLong, MaxStatementSize)
			return false
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
			return n > 0
		}
		if err != nil {
			s.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// avail makes sure k bytes from the scan position are buffered; false if the input ends
// first.
func (s *StatementReader) avail(k int) bool {
	for s.end-s.i < k {
		if !s.fill() {
			return false
		}
	}
	return true
}

// Next returns the next statement without its delimiter; the slice is valid until the next
// call. At the end it returns io.EOF.
func (s *StatementReader) Next() ([]byte, error) {
	for {
		if s.i >= s.end {
			if !s.fill() {
				if s.err != nil {
					return nil, s.err
				}
				// End of input: the rest is a statement if it has content.
				stmt := s.buf[s.start:s.end]
				s.start, s.i = s.end, s.end
				has := s.hasContent
				s.hasContent = false
				if s.state != stNormal && s.state != stLineComment && s.state != stBlockComment {
					return nil, fmt.Errorf("line %d: unterminated quoted string or identifier at end of input", s.line)
				}
				s.state = stNormal
				if has {
					return stmt, nil
				}
				return nil, io.EOF
			}
			continue
		}
		switch s.state {
		case stSingle, stDouble, stBacktick:
			q, bs := byte('\''), byte('\\')
			switch s.state {
			case stDouble:
				q = '"'
			case stBacktick:
				q, bs = '`', '`' // no escapes inside identifiers
			}
			buf, j := s.buf[:s.end], s.i
			for {
				j += indexAny4(buf[j:], q, bs, '\n', q)
				if j == len(buf) || buf[j] != '\n' {
					break
				}
				s.line++
				j++
			}
			s.i = j
			if j == s.end {
				continue
			}
			if s.buf[j] == '\\' {
				if !s.avail(2) {
					s.i = s.end
					continue
				}
				if s.buf[s.i+1] == '\n' {
					s.line++
				}
				s.i += 2
				continue
			}
			s.i++
			s.state = stNormal
		case stLineComment:
			j := bytes.IndexByte(s.buf[s.i:s.end], '\n')
			if j < 0 {
				s.i = s.end
				continue
			}
			s.i += j + 1
			s.line++
			s.state = stNormal
		case stBlockComment:
			j := s.i
			for j+1 < s.end && !(s.buf[j] == '*' && s.buf[j+1] == '/') {
				if s.buf[j] == '\n' {
					s.line++
				}
				j++
			}
			if j+1 >= s.end {
				s.i = j
				if !s.avail(2) {
					s.i = s.end
				}
				continue
			}
			s.i = j + 2
			s.state = stNormal
		default:
			if s.hasContent {
				buf, special, j := s.buf[:s.end], &s.special, s.i
				for j < len(buf) && !special[buf[j]] {
					j++
				}
				s.i = j
				if j == s.end {
					continue
				}
			}
			if stmt, ok, err := s.normal(); err != nil {
				return nil, err
			} else if ok {
				return stmt, nil
			}
		}
	}
}

// normal scans in the normal state; it returns a statement when one ends.
func (s *StatementReader) normal() ([]byte, bool, error) {
	c := s.buf[s.i]
	// A DELIMITER command at the beginning of a statement.
	if !s.hasContent && (c == 'd' || c == 'D') {
		for {
			if bytes.IndexByte(s.buf[s.i:s.end], '\n') >= 0 || !s.fill() {
				break
			}
		}
		line := s.buf[s.i:s.end]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j+1]
		}
		if len(line) > 10 && bytes.EqualFold(line[:9], []byte("delimiter")) && (line[9] == ' ' || line[9] == '\t') {
			d := bytes.TrimSpace(line[10:])
			if k := bytes.IndexAny(d, " \t"); k >= 0 {
				d = d[:k]
			}
			if len(d) == 0 {
				return nil, false, fmt.Errorf("line %d: DELIMITER without a delimiter", s.line)
			}
			s.setDelim(d)
			s.i += len(line)
			if line[len(line)-1] == '\n' {
				s.line++
			}
			s.start = s.i
			return nil, false, nil
		}
	}
	if c == s.delim[0] {
		if !s.avail(len(s.delim)) {
			s.hasContent = true
			s.i = s.end
			return nil, false, nil
		}
		if bytes.Equal(s.buf[s.i:s.i+len(s.delim)], s.delim) {
			stmt := s.buf[s.start:s.i]
			s.i += len(s.delim)
			s.start = s.i
			has := s.hasContent
			s.hasContent = false
			if has {
				return stmt, true, nil
			}
			return nil, false, nil
		}
	}
	switch c {
	case '\'':
		s.state = stSingle
		s.hasContent = true
	case '"':
		s.state = stDouble
		s.hasContent = true
	case '`':
		s.state = stBacktick
		s.hasContent = true
	case '#':
		s.state = stLineComment
	case '-':
		if s.avail(3) && s.buf[s.i+1] == '-' && s.buf[s.i+2] <= ' ' {
			s.state = stLineComment
		} else if s.end-s.i == 2 && s.buf[s.i+1] == '-' {
			s.state = stLineComment // "--" at the very end
		} else {
			s.hasContent = true
		}
	case '/':
		if s.avail(2) && s.buf[s.i+1] == '*' {
			if s.avail(3) && (s.buf[s.i+2] == '!' || s.buf[s.i+2] == 'M') {
				s.hasContent = true // executable comment
			}
			s.state = stBlockComment
			s.i += 2
			return nil, false, nil
		}
		s.hasContent = true
	case '\n':
		s.line++
	case ' ', '\t', '\r':
	default:
		s.hasContent = true
	}
	s.i++
	return nil, false, nil
}
