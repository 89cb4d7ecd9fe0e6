package dump

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// clientSections are the option-file groups the stock `mariadb` client reads. Options are
// applied in file order, so a later line wins, as in the client.
var clientSections = map[string]bool{
	"client": true, "client-server": true, "client-mariadb": true,
	"mysql": true, "mariadb-client": true, "mariadb": true,
}

// maxIncludeDepth bounds !include / !includedir recursion (and include loops).
const maxIncludeDepth = 10

// OptionFileError is a syntax error in an option file.
type OptionFileError struct {
	Path string
	Line int
	Msg  string
}

func (e *OptionFileError) Error() string {
	return fmt.Sprintf("option file %s line %d: %s", e.Path, e.Line, e.Msg)
}

// ReadOptionFile reads user, password, host, socket and port from the client sections
// ([client], [client-server], [client-mariadb], [mysql], [mariadb-client], [mariadb]) of a
// MariaDB option file such as /root/.my.cnf, following the client's rules: '#' and ';'
// start comment lines, '#' outside quotes ends a value, values may be quoted with ' or ",
// the escapes \n \t \r \b \s \\ \' \" are decoded, '-' and '_' are the same in names, a
// "loose-" prefix is ignored, and "!include FILE" / "!includedir DIR" (*.cnf, sorted) are
// followed. Other options and sections are ignored.
func ReadOptionFile(path string) (Credentials, error) {
	var c Credentials
	err := readOptionFile(path, 0, &c)
	return c, err
}

func readOptionFile(path string, depth int, c *Credentials) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("option file %s: !include nested deeper than %d (a loop?)", path, maxIncludeDepth)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read option file: %w", err)
	}
	return parseOptions(data, path, c, func(kind, arg string) error {
		if !filepath.IsAbs(arg) {
			arg = filepath.Join(filepath.Dir(path), arg)
		}
		if kind == "include" {
			return readOptionFile(arg, depth+1, c)
		}
		ents, err := os.ReadDir(arg)
		if err != nil {
			return fmt.Errorf("option file %s: !includedir: %w", path, err)
		}
		var names []string
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".cnf") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			if err := readOptionFile(filepath.Join(arg, n), depth+1, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// parseOptions parses one option file's content into c. include is called for !include
// ("include", path) and !includedir ("includedir", dir) lines; nil ignores them.
func parseOptions(data []byte, path string, c *Credentials, include func(kind, arg string) error) error {
	inClient := false
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		lineNo := i + 1
		line = strings.TrimRight(line, "\r")
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '!' {
			kind, arg, _ := strings.Cut(line[1:], " ")
			arg = strings.TrimSpace(arg)
			switch kind {
			case "include", "includedir":
				if arg == "" {
					return &OptionFileError{path, lineNo, "!" + kind + " without a path"}
				}
				if include != nil {
					if err := include(kind, arg); err != nil {
						return err
					}
				}
			default:
				return &OptionFileError{path, lineNo, fmt.Sprintf("unknown directive %q", "!"+kind)}
			}
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return &OptionFileError{path, lineNo, "section header without ']'"}
			}
			name := strings.ToLower(strings.TrimSpace(line[1:end]))
			inClient = clientSections[name]
			continue
		}
		line = removeEndComment(line)
		key, value, hasValue := strings.Cut(line, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		key = strings.ReplaceAll(key, "_", "-")
		key = strings.TrimPrefix(key, "loose-")
		if key == "" {
			return &OptionFileError{path, lineNo, "option without a name"}
		}
		if !inClient {
			continue
		}
		value = unquoteOption(strings.TrimSpace(value))
		switch key {
		case "user", "password", "host", "socket", "port":
		default:
			continue
		}
		if !hasValue {
			if key == "password" {
				return &OptionFileError{path, lineNo, "\"password\" without a value would make the client prompt; write password=... (or remove the line for no password)"}
			}
			return &OptionFileError{path, lineNo, fmt.Sprintf("%q needs a value", key)}
		}
		switch key {
		case "user":
			c.User = value
		case "password":
			c.Password = value
		case "host":
			c.Host = value
		case "socket":
			c.Socket = value
		case "port":
			p, err := strconv.Atoi(value)
			if err != nil || p <= 0 || p > 65535 {
				return &OptionFileError{path, lineNo, fmt.Sprintf("port %q is not a number between 1 and 65535", value)}
			}
			c.Port = p
		}
	}
	return nil
}

// removeEndComment cuts a line at the first '#' outside quotes (mysys' remove_end_comment).
func removeEndComment(s string) string {
	var quote byte
	escape := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if (ch == '\'' || ch == '"') && !escape {
			if quote == 0 {
				quote = ch
			} else if quote == ch {
				quote = 0
			}
		} else if quote == 0 && ch == '#' {
			return strings.TrimSpace(s[:i])
		}
		escape = quote != 0 && ch == '\\' && !escape
	}
	return s
}

// unquoteOption strips one pair of matching surrounding quotes and decodes the client's
// escape sequences (mysys' handle_default_option value processing).
func unquoteOption(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'b':
				b.WriteByte('\b')
			case 's':
				b.WriteByte(' ')
			case '"', '\'', '\\':
				b.WriteByte(v[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(v[i])
			}
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}
