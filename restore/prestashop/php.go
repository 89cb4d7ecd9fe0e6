package prestashop

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// This file holds a small PHP reader: enough of the language to find the
// values of app/config/parameters.php (a var_export'ed array returned by the
// file) and of the define() calls of config/settings.inc.php, with the exact
// byte span of every value so that one value can be replaced without
// touching a single other byte of the file.

// maxNesting bounds array nesting so hostile input cannot exhaust the stack.
const maxNesting = 64

type tokKind int

const (
	tEOF tokKind = iota
	tOpenTag
	tCloseTag
	tSString // '...'
	tDString // "..."
	tNumber
	tIdent
	tVariable // $name
	tPunct
)

type token struct {
	kind       tokKind
	start, end int // byte offsets in the source
	text       string
}

// lexPHP splits src into tokens, dropping white space and comments. Inline
// HTML before the first open tag is not allowed (a config file has none).
func lexPHP(src []byte) ([]token, error) {
	var toks []token
	i := 0
	// Optional UTF-8 byte order mark, then "<?php".
	if bytes.HasPrefix(src, []byte("\xef\xbb\xbf")) {
		i = 3
	}
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\r' || src[i] == '\n') {
		i++
	}
	if !bytes.HasPrefix(src[i:], []byte("<?php")) {
		return nil, errors.New("does not start with <?php")
	}
	toks = append(toks, token{kind: tOpenTag, start: i, end: i + 5})
	i += 5
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '#' && (i+1 >= len(src) || src[i+1] != '['), c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				if src[i] == '?' && i+1 < len(src) && src[i+1] == '>' {
					break
				}
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := bytes.Index(src[i+2:], []byte("*/"))
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at byte %d", i)
			}
			i += 2 + end + 2
		case c == '?' && i+1 < len(src) && src[i+1] == '>':
			toks = append(toks, token{kind: tCloseTag, start: i, end: i + 2})
			i += 2
			// Only white space may follow a closing tag in a config file.
			if len(bytes.TrimSpace(src[i:])) != 0 {
				return nil, fmt.Errorf("unexpected output after ?> at byte %d", i)
			}
			i = len(src)
		case c == '\'':
			j := i + 1
			for j < len(src) && src[j] != '\'' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			toks = append(toks, token{kind: tSString, start: i, end: j + 1, text: string(src[i : j+1])})
			i = j + 1
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			toks = append(toks, token{kind: tDString, start: i, end: j + 1, text: string(src[i : j+1])})
			i = j + 1
		case c == '`':
			return nil, fmt.Errorf("shell command (backtick) at byte %d not supported", i)
		case c == '<' && bytes.HasPrefix(src[i:], []byte("<<<")):
			return nil, fmt.Errorf("heredoc at byte %d not supported", i)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (isIdentByte(src[j]) || src[j] == '.' ||
				(src[j] == '+' || src[j] == '-') && (src[j-1] == 'e' || src[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{kind: tNumber, start: i, end: j, text: string(src[i:j])})
			i = j
		case isIdentByte(c) || c == '\\':
			j := i
			for j < len(src) && (isIdentByte(src[j]) || src[j] == '\\') {
				j++
			}
			toks = append(toks, token{kind: tIdent, start: i, end: j, text: string(src[i:j])})
			i = j
		case c == '$' && i+1 < len(src) && isIdentByte(src[i+1]):
			j := i + 1
			for j < len(src) && isIdentByte(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tVariable, start: i, end: j, text: string(src[i:j])})
			i = j
		default:
			n := 1
			for _, p := range []string{"=>", "::", "->", "??", "==", "!=", "<=", ">=", "&&", "||"} {
				if bytes.HasPrefix(src[i:], []byte(p)) {
					n = 2
					break
				}
			}
			toks = append(toks, token{kind: tPunct, start: i, end: i + n, text: string(src[i : i+n])})
			i += n
		}
	}
	toks = append(toks, token{kind: tEOF, start: len(src), end: len(src)})
	return toks, nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// valueKind classifies a PHP value expression.
type valueKind int

const (
	kindString valueKind = iota // a string literal or a concatenation of literals
	kindNumber
	kindBool
	kindNull
	kindArray
	kindExpr // anything else (getenv(), constants, ...): not a literal
)

// phpValue is one value expression and where it sits in the source.
type phpValue struct {
	start, end int // byte span in the source, end exclusive
	kind       valueKind
	str        string // decoded value for kindString, source text for number/bool
	arr        *phpArray
}

// literal reports the value as PHP would turn it into a string, and whether
// it is known without running code.
func (v phpValue) literal() (string, bool) {
	switch v.kind {
	case kindString, kindNumber:
		return v.str, true
	case kindNull:
		return "", true
	case kindBool:
		if strings.EqualFold(v.str, "true") {
			return "1", true
		}
		return "", true
	}
	return "", false
}

type phpEntry struct {
	key    string // decoded key; "" with hasKey false for list entries
	hasKey bool
	value  phpValue
}

type phpArray struct {
	entries []phpEntry
}

func (a *phpArray) get(key string) (phpValue, bool) {
	var v phpValue
	found := false
	for _, e := range a.entries {
		if e.hasKey && e.key == key {
			v, found = e.value, true // the last duplicate wins, as in PHP
		}
	}
	return v, found
}

type phpParser struct {
	src   []byte
	toks  []token
	pos   int
	depth int
}

func (p *phpParser) peek() token { return p.toks[p.pos] }

func (p *phpParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *phpParser) errorf(format string, args ...any) error {
	t := p.peek()
	line := 1 + bytes.Count(p.src[:t.start], []byte("\n"))
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

func isPunct(t token, s string) bool { return t.kind == tPunct && t.text == s }

// isClose reports whether t ends an element list or an argument.
func isClose(t token) bool {
	return t.kind == tPunct && (t.text == ")" || t.text == "]" || t.text == "," || t.text == ";" || t.text == "=>") ||
		t.kind == tEOF || t.kind == tCloseTag
}

// parseValue parses one value expression up to (not including) the next ',',
// ')', ']' or ';' at nesting depth zero.
func (p *phpParser) parseValue() (phpValue, error) {
	start := p.peek()
	if isClose(start) {
		return phpValue{}, p.errorf("expected a value, found %q", start.text)
	}
	v, ok, err := p.parseLiteral()
	if err != nil {
		return phpValue{}, err
	}
	if ok && isClose(p.peek()) {
		return v, nil
	}
	// Not a plain literal: an expression. Skip it with bracket matching.
	p.pos = indexOfToken(p.toks, start)
	var stack []string
	for {
		t := p.peek()
		if t.kind == tEOF || t.kind == tCloseTag {
			if len(stack) > 0 {
				return phpValue{}, p.errorf("unbalanced %q", stack[len(stack)-1])
			}
			break
		}
		if len(stack) == 0 && isClose(t) {
			break
		}
		if t.kind == tPunct {
			switch t.text {
			case "(", "[", "{":
				if len(stack) >= maxNesting {
					return phpValue{}, p.errorf("nested too deeply")
				}
				stack = append(stack, t.text)
			case ")", "]", "}":
				want := map[string]string{")": "(", "]": "[", "}": "{"}[t.text]
				if len(stack) == 0 || stack[len(stack)-1] != want {
					return phpValue{}, p.errorf("unbalanced %q", t.text)
				}
				stack = stack[:len(stack)-1]
			case ";":
				if len(stack) > 0 {
					return phpValue{}, p.errorf("unexpected ';' inside brackets")
				}
			}
		}
		p.next()
	}
	end := p.toks[p.pos-1].end
	if p.pos-1 < indexOfToken(p.toks, start) {
		return phpValue{}, p.errorf("expected a value")
	}
	return phpValue{start: start.start, end: end, kind: kindExpr}, nil
}

func indexOfToken(toks []token, t token) int {
	for i := range toks {
		if toks[i].start == t.start && toks[i].kind == t.kind {
			return i
		}
	}
	return len(toks) - 1
}

// parseLiteral parses a literal value (string concatenation, number, bool,
// null, array). ok is false when the tokens do not form one.
func (p *phpParser) parseLiteral() (v phpValue, ok bool, err error) {
	t := p.peek()
	switch {
	case t.kind == tSString || t.kind == tDString:
		var sb strings.Builder
		first, end := t.start, t.end
		for {
			t = p.peek()
			var s string
			var lit bool
			switch t.kind {
			case tSString:
				s, lit = decodeSingleQuoted(t.text), true
			case tDString:
				s, lit = decodeDoubleQuoted(t.text)
			}
			if !lit {
				return phpValue{}, false, nil
			}
			sb.WriteString(s)
			end = t.end
			p.next()
			if !isPunct(p.peek(), ".") {
				break
			}
			p.next()
		}
		return phpValue{start: first, end: end, kind: kindString, str: sb.String()}, true, nil
	case t.kind == tNumber || isPunct(t, "-") || isPunct(t, "+"):
		start := t.start
		sign := ""
		if t.kind == tPunct {
			sign = t.text
			p.next()
			t = p.peek()
			if t.kind != tNumber {
				return phpValue{}, false, nil
			}
		}
		p.next()
		s := sign + t.text
		if sign == "+" {
			s = t.text
		}
		return phpValue{start: start, end: t.end, kind: kindNumber, str: s}, true, nil
	case t.kind == tIdent:
		switch strings.ToLower(t.text) {
		case "true", "false":
			p.next()
			return phpValue{start: t.start, end: t.end, kind: kindBool, str: strings.ToLower(t.text)}, true, nil
		case "null":
			p.next()
			return phpValue{start: t.start, end: t.end, kind: kindNull}, true, nil
		case "array":
			if isPunct(p.toks[p.pos+1], "(") {
				return p.parseArray()
			}
		}
		return phpValue{}, false, nil
	case isPunct(t, "["):
		return p.parseArray()
	}
	return phpValue{}, false, nil
}

func (p *phpParser) parseArray() (phpValue, bool, error) {
	open := p.next()
	closer := "]"
	if open.kind == tIdent { // array(
		p.next()
		closer = ")"
	}
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxNesting {
		return phpValue{}, false, p.errorf("arrays nested more than %d deep", maxNesting)
	}
	arr := &phpArray{}
	for {
		if isPunct(p.peek(), closer) {
			end := p.next().end
			return phpValue{start: open.start, end: end, kind: kindArray, arr: arr}, true, nil
		}
		first, err := p.parseValue()
		if err != nil {
			return phpValue{}, false, err
		}
		e := phpEntry{value: first}
		if isPunct(p.peek(), "=>") {
			p.next()
			key, ok := first.literal()
			if !ok || first.kind == kindArray {
				return phpValue{}, false, p.errorf("array key is not a literal")
			}
			if first.kind == kindBool && first.str == "true" {
				key = "1"
			} else if first.kind == kindBool {
				key = "0"
			}
			val, err := p.parseValue()
			if err != nil {
				return phpValue{}, false, err
			}
			e = phpEntry{key: key, hasKey: true, value: val}
		}
		arr.entries = append(arr.entries, e)
		switch t := p.peek(); {
		case isPunct(t, ","):
			p.next()
		case isPunct(t, closer):
		default:
			return phpValue{}, false, p.errorf("expected ',' or %q in array, found %q", closer, t.text)
		}
	}
}

// decodeSingleQuoted decodes a PHP single-quoted literal (with its quotes).
func decodeSingleQuoted(lit string) string {
	s := lit[1 : len(lit)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || s[i+1] == '\'') {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeDoubleQuoted decodes a PHP double-quoted literal. ok is false when
// it interpolates variables (its value is then not known).
func decodeDoubleQuoted(lit string) (string, bool) {
	s := lit[1 : len(lit)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '$' && i+1 < len(s) && (isIdentByte(s[i+1]) || s[i+1] == '{') {
			return "", false
		}
		if c == '{' && i+1 < len(s) && s[i+1] == '$' {
			return "", false
		}
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'v':
			b.WriteByte('\v')
		case 'e':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case '\\', '$', '"':
			b.WriteByte(e)
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && isHex(s[j]) {
				j++
			}
			if j == i+1 {
				b.WriteString(`\x`)
				continue
			}
			n, _ := strconv.ParseUint(s[i+1:j], 16, 8)
			b.WriteByte(byte(n))
			i = j - 1
		case 'u':
			if i+1 < len(s) && s[i+1] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return "", false
				}
				n, err := strconv.ParseUint(s[i+2:i+end], 16, 32)
				if err != nil || n > 0x10FFFF {
					return "", false
				}
				b.WriteRune(rune(n))
				i += end
				continue
			}
			b.WriteString(`\u`)
		default:
			if e >= '0' && e <= '7' {
				j := i
				for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
					j++
				}
				n, _ := strconv.ParseUint(s[i:j], 8, 16)
				b.WriteByte(byte(n))
				i = j - 1
				continue
			}
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// phpQuote renders s as a PHP single-quoted literal, the way var_export does.
func phpQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// parametersFile is a parsed app/config/parameters.php.
type parametersFile struct {
	params *phpArray // the 'parameters' array
}

// parseParameters parses the source of app/config/parameters.php: a file
// that returns an array with a 'parameters' array inside.
func parseParameters(src []byte) (*parametersFile, error) {
	toks, err := lexPHP(src)
	if err != nil {
		return nil, err
	}
	p := &phpParser{src: src, toks: toks}
	// Find "return" at statement level.
	depth := 0
	for {
		t := p.peek()
		if t.kind == tEOF || t.kind == tCloseTag {
			return nil, errors.New("no return statement")
		}
		if t.kind == tPunct {
			switch t.text {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
			}
		}
		if depth == 0 && t.kind == tIdent && strings.EqualFold(t.text, "return") {
			p.next()
			break
		}
		p.next()
	}
	v, ok, err := p.parseLiteral()
	if err != nil {
		return nil, err
	}
	if !ok || v.kind != kindArray {
		return nil, p.errorf("the file does not return an array literal")
	}
	if t := p.peek(); !isPunct(t, ";") && t.kind != tCloseTag && t.kind != tEOF {
		return nil, p.errorf("unexpected %q after the returned array", t.text)
	}
	inner, ok := v.arr.get("parameters")
	if !ok {
		return nil, errors.New("the returned array has no 'parameters' key")
	}
	if inner.kind != kindArray {
		return nil, errors.New("'parameters' is not an array")
	}
	return &parametersFile{params: inner.arr}, nil
}

// defineCall is one define('NAME', value) call of a PHP file.
type defineCall struct {
	name  string
	value phpValue
}

// parseDefines finds every define('NAME', value) call of a PHP file
// (config/settings.inc.php). Other code is skipped.
func parseDefines(src []byte) ([]defineCall, error) {
	toks, err := lexPHP(src)
	if err != nil {
		return nil, err
	}
	p := &phpParser{src: src, toks: toks}
	var out []defineCall
	for p.peek().kind != tEOF {
		t := p.next()
		if t.kind != tIdent || !strings.EqualFold(strings.TrimPrefix(t.text, `\`), "define") || !isPunct(p.peek(), "(") {
			continue
		}
		if p.pos >= 2 && (isPunct(p.toks[p.pos-2], "->") || isPunct(p.toks[p.pos-2], "::") || p.toks[p.pos-2].kind == tIdent && strings.EqualFold(p.toks[p.pos-2].text, "function")) {
			continue
		}
		p.next() // (
		nameVal, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		name, ok := nameVal.literal()
		if !ok || nameVal.kind != kindString {
			continue // define($computed, ...): not ours
		}
		if !isPunct(p.peek(), ",") {
			return nil, p.errorf("define(%q: expected ','", name)
		}
		p.next()
		val, err := p.parseValue()
		if err != nil {
			return nil, fmt.Errorf("define(%q): %w", name, err)
		}
		if !isPunct(p.peek(), ")") {
			return nil, p.errorf("define(%q): expected ')'", name)
		}
		p.next()
		out = append(out, defineCall{name: name, value: val})
	}
	return out, nil
}

// span is one replacement of src[start:end].
type span struct {
	start, end int
	text       string
}

// applySpans replaces non-overlapping spans in src.
func applySpans(src []byte, spans []span) []byte {
	// Sort by start (few spans: insertion sort).
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].start < spans[j-1].start; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	var out bytes.Buffer
	out.Grow(len(src) + 64)
	last := 0
	for _, s := range spans {
		out.Write(src[last:s.start])
		out.WriteString(s.text)
		last = s.end
	}
	out.Write(src[last:])
	return out.Bytes()
}

// setParameters returns src with the given keys of the 'parameters' array
// set to the given strings. Every key must exist. The result is parsed again
// and checked: the edited keys hold the new values and every other entry is
// byte-for-byte what it was.
func setParameters(src []byte, values map[string]string) ([]byte, error) {
	pf, err := parseParameters(src)
	if err != nil {
		return nil, err
	}
	var spans []span
	for _, key := range sortedKeys(values) {
		found := false
		// A key written twice is replaced twice: PHP keeps the last, a
		// human reading the file may look at the first.
		for _, e := range pf.params.entries {
			if !e.hasKey || e.key != key {
				continue
			}
			if e.value.kind == kindArray {
				return nil, fmt.Errorf("key %s: is an array, expected a string", key)
			}
			spans = append(spans, span{start: e.value.start, end: e.value.end, text: phpQuote(values[key])})
			found = true
		}
		if !found {
			return nil, &KeyError{Key: key}
		}
	}
	out := applySpans(src, spans)
	if err := checkParameters(src, out, values); err != nil {
		return nil, fmt.Errorf("internal error: rewritten file does not check: %w", err)
	}
	return out, nil
}

// checkParameters proves that out is src with exactly values changed.
func checkParameters(src, out []byte, values map[string]string) error {
	before, err := parseParameters(src)
	if err != nil {
		return err
	}
	after, err := parseParameters(out)
	if err != nil {
		return err
	}
	if len(before.params.entries) != len(after.params.entries) {
		return errors.New("number of parameters changed")
	}
	for i, b := range before.params.entries {
		a := after.params.entries[i]
		if a.key != b.key || a.hasKey != b.hasKey {
			return fmt.Errorf("entry %d: key changed", i)
		}
		if want, ok := values[b.key]; ok && b.hasKey {
			if got, _ := a.value.literal(); got != want || a.value.kind != kindString {
				return fmt.Errorf("key %s: reads back %q", b.key, got)
			}
			continue
		}
		if !bytes.Equal(src[b.value.start:b.value.end], out[a.value.start:a.value.end]) {
			return fmt.Errorf("key %s: changed", b.key)
		}
	}
	return nil
}

// setDefines returns src with the values of the named define() calls
// replaced. Every name must be defined.
func setDefines(src []byte, values map[string]string) ([]byte, error) {
	defs, err := parseDefines(src)
	if err != nil {
		return nil, err
	}
	var spans []span
	for _, name := range sortedKeys(values) {
		found := false
		for _, d := range defs {
			if d.name == name {
				spans = append(spans, span{start: d.value.start, end: d.value.end, text: phpQuote(values[name])})
				found = true
			}
		}
		if !found {
			return nil, &KeyError{Key: name}
		}
	}
	out := applySpans(src, spans)
	after, err := parseDefines(out)
	if err != nil {
		return nil, fmt.Errorf("internal error: rewritten file does not parse: %w", err)
	}
	if len(after) != len(defs) {
		return nil, errors.New("internal error: rewritten file has a different number of define() calls")
	}
	for i, d := range defs {
		a := after[i]
		if want, ok := values[d.name]; ok {
			if got, _ := a.value.literal(); got != want {
				return nil, fmt.Errorf("internal error: %s reads back %q", d.name, got)
			}
		} else if !bytes.Equal(src[d.value.start:d.value.end], out[a.value.start:a.value.end]) {
			return nil, fmt.Errorf("internal error: %s changed", d.name)
		}
	}
	return out, nil
}

// KeyError reports a setting that a configuration file lacks.
type KeyError struct {
	Key string
}

func (e *KeyError) Error() string { return fmt.Sprintf("key %s not found", e.Key) }
