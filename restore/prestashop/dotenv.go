package prestashop

import (
	"errors"
	"fmt"
	"strings"
)

// PrestaShop 8.1+ and 9 read a root .env file through Symfony's Dotenv
// (src/Core/Util/ConfigurationVariablesLoader.php, called from
// config/bootstrap.php) and let these variables override the values of
// app/config/parameters.php after it has been loaded.
var envOverrides = map[string]string{
	"database_host":     "PS_DATABASE_HOST",
	"database_port":     "PS_DATABASE_PORT",
	"database_user":     "PS_DATABASE_USER",
	"database_password": "PS_DATABASE_PASSWORD",
	"database_name":     "PS_DATABASE_NAME",
	"database_prefix":   "PS_DATABASE_PREFIX",
	"database_engine":   "PS_DATABASE_ENGINE",
	"cookie_key":        "PS_COOKIE_KEY",
	"cookie_iv":         "PS_COOKIE_IV",
	"new_cookie_key":    "PS_NEW_COOKIE_KEY",
	"mailer_transport":  "PS_MAILER_TRANSPORT",
	"mailer_host":       "PS_MAILER_HOST",
	"mailer_user":       "PS_MAILER_USER",
	"mailer_password":   "PS_MAILER_PASSWORD",
	"locale":            "PS_LOCALE",
	"secret":            "PS_SECRET",
	"ps_caching":        "PS_CACHING",
	"ps_cache_enable":   "PS_CACHE_ENABLE",
	"ps_creation_date":  "PS_CREATION_DATE",
	"use_debug_toolbar": "PS_USE_DEBUG_TOOLBAR",
}

// envAssign is one NAME=value line of a dotenv file.
type envAssign struct {
	name       string
	start, end int    // byte span of the value (after '=', before a trailing comment)
	value      string // decoded value
	literal    bool   // false when the value expands variables or commands
}

// parseDotenv parses a dotenv file with the syntax of Symfony's Dotenv
// component: NAME=value, optional "export ", single quotes (literal),
// double quotes (\" \\ \n \r escapes, $VAR expansion), unquoted values with
// "#" comments after white space, adjacent segments concatenated.
func parseDotenv(src []byte) ([]envAssign, error) {
	d := string(src)
	var out []envAssign
	line := func(i int) int { return 1 + strings.Count(d[:i], "\n") }
	i := 0
	for i < len(d) {
		// Skip blank lines and white space.
		for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n') {
			i++
		}
		if i >= len(d) {
			break
		}
		if d[i] == '#' {
			for i < len(d) && d[i] != '\n' {
				i++
			}
			continue
		}
		if strings.HasPrefix(d[i:], "export ") || strings.HasPrefix(d[i:], "export\t") {
			i += 7
			for i < len(d) && (d[i] == ' ' || d[i] == '\t') {
				i++
			}
		}
		j := i
		for j < len(d) && (d[j] == '_' || d[j] >= 'A' && d[j] <= 'Z' || d[j] >= 'a' && d[j] <= 'z' || j > i && d[j] >= '0' && d[j] <= '9') {
			j++
		}
		if j == i {
			return nil, fmt.Errorf("line %d: invalid character %q in variable name", line(i), d[i])
		}
		name := d[i:j]
		if j >= len(d) || d[j] != '=' {
			return nil, fmt.Errorf("line %d: %s: expected '=' right after the variable name", line(i), name)
		}
		i = j + 1
		a, next, err := lexEnvValue(d, i)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", line(i), name, err)
		}
		a.name = name
		out = append(out, a)
		i = next
	}
	return out, nil
}

// lexEnvValue reads the value that starts at d[i]. It returns the value and
// the offset of the end of its line.
func lexEnvValue(d string, i int) (envAssign, int, error) {
	a := envAssign{start: i, end: i, literal: true}
	var v strings.Builder
	for i < len(d) && d[i] != '\n' {
		switch d[i] {
		case '\'':
			end := strings.IndexByte(d[i+1:], '\'')
			if end < 0 {
				return a, 0, errors.New("missing closing single quote")
			}
			v.WriteString(d[i+1 : i+1+end])
			i += end + 2
			a.end = i
		case '"':
			j := i + 1
			for {
				if j >= len(d) {
					return a, 0, errors.New("missing closing double quote")
				}
				if d[j] == '"' && !(d[j-1] == '\\' && (j-2 < i+1 || d[j-2] != '\\')) {
					break
				}
				j++
			}
			raw := d[i+1 : j]
			raw = strings.NewReplacer(`\"`, `"`, `\r`, "\r", `\n`, "\n").Replace(raw)
			s, lit := resolveEnvDollar(raw)
			if !lit {
				a.literal = false
			}
			v.WriteString(strings.ReplaceAll(s, `\\`, `\`))
			i = j + 1
			a.end = i
		default:
			var raw strings.Builder
			prev := d[i-1]
			for i < len(d) && d[i] != '\n' && d[i] != '"' && d[i] != '\'' && !((prev == ' ' || prev == '\t') && d[i] == '#') {
				if d[i] == '\\' && i+1 < len(d) && (d[i+1] == '"' || d[i+1] == '\'') {
					i++
				}
				prev = d[i]
				raw.WriteByte(d[i])
				if d[i] != ' ' && d[i] != '\t' && d[i] != '\r' {
					a.end = i + 1
				}
				i++
			}
			val := strings.TrimRight(raw.String(), " \t\r")
			s, lit := resolveEnvDollar(val)
			if !lit {
				a.literal = false
			}
			s = strings.ReplaceAll(s, `\\`, `\`)
			if lit && strings.ContainsAny(val, " \t") {
				return a, 0, errors.New("a value containing spaces must be surrounded by quotes")
			}
			v.WriteString(s)
			if i < len(d) && d[i] == '#' {
				for i < len(d) && d[i] != '\n' {
					i++
				}
			}
		}
	}
	a.value = v.String()
	return a, i, nil
}

// resolveEnvDollar removes the backslash of escaped "\$" and reports whether
// the value is free of variable and command expansion.
func resolveEnvDollar(s string) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		// Count the backslashes just before the dollar.
		n := 0
		for k := i - 1; k >= 0 && s[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			str := b.String()
			b.Reset()
			b.WriteString(str[:len(str)-1])
			b.WriteByte('$')
			continue
		}
		if i+1 < len(s) && (s[i+1] == '{' || s[i+1] == '(' || s[i+1] == '_' || s[i+1] >= 'A' && s[i+1] <= 'Z' || s[i+1] >= 'a' && s[i+1] <= 'z') {
			return "", false
		}
		b.WriteByte('$')
	}
	return b.String(), true
}

// dotenvQuote renders s so that Symfony's Dotenv reads it back unchanged:
// single-quoted segments (no escapes, no expansion) with every single quote
// written as a double-quoted "'" segment.
func dotenvQuote(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r\x00") {
		return "", errors.New("value contains a line break or NUL byte, which a .env file cannot hold")
	}
	parts := strings.Split(s, "'")
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(`"'"`)
		}
		if p != "" || len(parts) == 1 {
			b.WriteString("'" + p + "'")
		}
	}
	return b.String(), nil
}

// setDotenv replaces the value of every assignment of the named variables.
// Variables that the file does not assign are left out. It returns the new
// file and the names it changed.
func setDotenv(src []byte, values map[string]string) ([]byte, []string, error) {
	assigns, err := parseDotenv(src)
	if err != nil {
		return nil, nil, err
	}
	var spans []span
	var changed []string
	for _, a := range assigns {
		want, ok := values[a.name]
		if !ok {
			continue
		}
		q, err := dotenvQuote(want)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", a.name, err)
		}
		spans = append(spans, span{start: a.start, end: a.end, text: q})
		if !contains(changed, a.name) {
			changed = append(changed, a.name)
		}
	}
	out := applySpans(src, spans)
	after, err := parseDotenv(out)
	if err != nil {
		return nil, nil, fmt.Errorf("internal error: rewritten .env does not parse: %w", err)
	}
	if len(after) != len(assigns) {
		return nil, nil, errors.New("internal error: rewritten .env has a different number of variables")
	}
	for k, a := range after {
		b := assigns[k]
		if want, ok := values[b.name]; ok {
			if a.value != want || !a.literal {
				return nil, nil, fmt.Errorf("internal error: %s reads back %q", b.name, a.value)
			}
		} else if string(src[b.start:b.end]) != string(out[a.start:a.end]) {
			return nil, nil, fmt.Errorf("internal error: %s changed", b.name)
		}
	}
	return out, changed, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
