package config

import "strconv"

// keyLines maps the path of every key of a TOML document to the line
// (1-based) where it is defined. Paths use the names of Error.Key:
// "sources[1].paths[0]", "targets.staging.root".
//
// BurntSushi/toml records key positions internally but exports them only
// through decode errors, and its MetaData keys carry no array indices, so
// two [[sources]] tables cannot be told apart. The scanner below walks the
// document once more instead. It is run only on documents that toml has
// already parsed without error; on anything it does not understand it stops
// and returns what it found so far (a missing line degrades an error message
// to the line of the enclosing table, never to a panic).
func keyLines(src []byte) map[string]int {
	s := &lineScanner{src: src, line: 1, out: map[string]int{}, arrays: map[string]int{}}
	s.document()
	return s.out
}

type lineScanner struct {
	src    []byte
	i      int
	line   int
	out    map[string]int
	arrays map[string]int // array-of-tables path -> number of tables seen
	cur    string         // resolved path of the current table
	bad    bool
}

func (s *lineScanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

func (s *lineScanner) eof() bool { return s.bad || s.i >= len(s.src) }

// skipSpace skips blanks and, when nl is set, newlines and comments too.
func (s *lineScanner) skipSpace(nl bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.i++
			s.line++
		case c == '#' && nl:
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *lineScanner) record(path string) {
	if _, ok := s.out[path]; !ok {
		s.out[path] = s.line
	}
}

func join(base, name string) string {
	if base == "" {
		return name
	}
	return base + "." + name
}

func (s *lineScanner) document() {
	for !s.eof() {
		start := s.i
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.src[s.i] == '[' {
			s.header()
		} else {
			s.keyValue(s.cur)
		}
		// The rest of the line may only hold blanks and a comment.
		s.skipSpace(false)
		if !s.eof() && s.src[s.i] == '#' {
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		}
		if s.i == start {
			s.bad = true
		}
	}
}

func (s *lineScanner) header() {
	array := s.peek(1) == '['
	if array {
		s.i += 2
	} else {
		s.i++
	}
	parts := s.key()
	if len(parts) == 0 {
		s.bad = true
		return
	}
	s.skipSpace(false)
	if array {
		if s.peek(0) != ']' || s.peek(1) != ']' {
			s.bad = true
			return
		}
		s.i += 2
	} else {
		if s.peek(0) != ']' {
			s.bad = true
			return
		}
		s.i++
	}
	base := s.resolve("", parts[:len(parts)-1])
	p := join(base, parts[len(parts)-1])
	if array {
		n := s.arrays[p]
		s.arrays[p] = n + 1
		s.record(p)
		p += "[" + strconv.Itoa(n) + "]"
	}
	s.record(p)
	s.cur = p
}

// resolve appends parts to base, selecting the latest table of every array
// of tables on the way.
func (s *lineScanner) resolve(base string, parts []string) string {
	p := base
	for _, part := range parts {
		p = join(p, part)
		if n := s.arrays[p]; n > 0 {
			p += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return p
}

func (s *lineScanner) keyValue(table string) {
	parts := s.key()
	if len(parts) == 0 {
		s.bad = true
		return
	}
	s.skipSpace(false)
	if s.peek(0) != '=' {
		s.bad = true
		return
	}
	s.i++
	p := table
	for _, part := range parts {
		p = join(p, part)
		s.record(p)
	}
	s.value(p)
}

// key reads a possibly dotted, possibly quoted key.
func (s *lineScanner) key() []string {
	var parts []string
	for {
		s.skipSpace(false)
		if s.eof() {
			return nil
		}
		var part string
		switch c := s.src[s.i]; {
		case c == '"' || c == '\'':
			part = s.shortString(c)
		case isBare(c):
			start := s.i
			for !s.eof() && isBare(s.src[s.i]) {
				s.i++
			}
			part = string(s.src[start:s.i])
		default:
			return nil
		}
		if s.bad {
			return nil
		}
		parts = append(parts, part)
		s.skipSpace(false)
		if s.peek(0) != '.' {
			return parts
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// shortString reads a one-line basic or literal string and returns its raw
// content (escapes are kept as written, which is enough for key names that
// config.Config accepts).
func (s *lineScanner) shortString(q byte) string {
	s.i++
	start := s.i
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == '\\' && q == '"':
			s.i += 2
		case c == q:
			v := string(s.src[start:s.i])
			s.i++
			return v
		case c == '\n':
			s.bad = true
			return ""
		default:
			s.i++
		}
	}
	s.bad = true
	return ""
}

func (s *lineScanner) longString(q byte) {
	s.i += 3
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == '\\' && q == '"':
			if s.peek(1) == '\n' {
				s.line++
			}
			s.i += 2
		case c == '\n':
			s.line++
			s.i++
		case c == q && s.peek(1) == q && s.peek(2) == q:
			s.i += 3
			// Up to two more quotes belong to the content.
			for k := 0; k < 2 && s.peek(0) == q; k++ {
				s.i++
			}
			return
		default:
			s.i++
		}
	}
}

func (s *lineScanner) value(path string) {
	s.skipSpace(false)
	if s.eof() {
		s.bad = true
		return
	}
	switch c := s.src[s.i]; c {
	case '"', '\'':
		if s.peek(1) == c && s.peek(2) == c {
			s.longString(c)
		} else {
			s.shortString(c)
		}
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.skipSpace(true)
			if s.eof() {
				s.bad = true
				return
			}
			if s.src[s.i] == ']' {
				s.i++
				return
			}
			elem := path + "[" + strconv.Itoa(n) + "]"
			s.record(elem)
			s.value(elem)
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.i++
			}
		}
	case '{':
		s.i++
		for {
			s.skipSpace(true)
			if s.eof() {
				s.bad = true
				return
			}
			if s.src[s.i] == '}' {
				s.i++
				return
			}
			start := s.i
			s.keyValue(path)
			s.skipSpace(true)
			if s.peek(0) == ',' {
				s.i++
			}
			if s.i == start {
				s.bad = true
				return
			}
		}
	default:
		start := s.i
		for !s.eof() {
			switch s.src[s.i] {
			case ',', ']', '}', '#', '\n':
				if s.i == start {
					s.bad = true
				}
				return
			}
			s.i++
		}
	}
}
