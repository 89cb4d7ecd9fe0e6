package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // file name as given to Parse
	Line int    // 1-based; 0 when the value did not come from a line
	Key  string // "sources[1].paths[0]"; empty for syntax errors without one
	Env  string // the environment variable the value came from, if any
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		if e.Env != "" {
			fmt.Fprintf(&b, " (from %s)", e.Env)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in line order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// decodeFile parses data into a Config with defaults and returns the lines
// of its keys and the problems found (unknown keys, wrong types). On a
// syntax error the Config is nil.
func decodeFile(name string, data []byte) (*Config, map[string]int, Errors) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, Errors{{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}}
		}
		return nil, nil, Errors{{File: name, Msg: err.Error()}}
	}
	lines := keyLines(data)
	c := Default()
	d := &decoder{v: validator{file: name, lines: lines}}
	d.value(raw, reflect.ValueOf(c).Elem(), "")
	if _, ok := raw["retention"]; ok {
		// A [retention] table replaces the default policy; decode again
		// onto a zero policy so that unset keys mean zero.
		c.Retention = Retention{}
		d.value(raw["retention"], reflect.ValueOf(&c.Retention).Elem(), "retention")
	}
	return c, lines, d.v.errs
}

type decoder struct{ v validator }

var (
	durationType = reflect.TypeFor[time.Duration]()
	rateType     = reflect.TypeFor[Rate]()
)

// value stores the TOML value in into rv, which holds the defaults.
func (d *decoder) value(in any, rv reflect.Value, path string) {
	switch rv.Type() {
	case durationType:
		s, ok := in.(string)
		if !ok {
			d.v.addf(path, "must be a duration string such as \"30s\" or \"10m\", not %s", tomlType(in))
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.v.addf(path, "%v", err)
			return
		}
		rv.SetInt(int64(dur))
		return
	case rateType:
		s, ok := in.(string)
		if !ok {
			d.v.addf(path, "must be a rate string such as \"20MiB\" (bytes per second), not %s", tomlType(in))
			return
		}
		r, err := ParseRate(s)
		if err != nil {
			d.v.addf(path, "%v", err)
			return
		}
		rv.SetInt(int64(r))
		return
	}
	switch rv.Kind() {
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			d.v.addf(path, "must be a string, not %s", tomlType(in))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			d.v.addf(path, "must be true or false, not %s", tomlType(in))
			return
		}
		rv.SetBool(b)
	case reflect.Int:
		n, ok := in.(int64)
		if !ok {
			d.v.addf(path, "must be an integer, not %s", tomlType(in))
			return
		}
		if n > math.MaxInt32 || n < math.MinInt32 {
			d.v.addf(path, "%d is out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Slice:
		d.slice(in, rv, path)
	case reflect.Map:
		m, ok := in.(map[string]any)
		if !ok {
			d.v.addf(path, "must be a table, not %s", tomlType(in))
			return
		}
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
		for _, k := range sortedKeys(m) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			setDefaults(ev)
			d.value(m[k], ev, join(path, k))
			rv.SetMapIndex(reflect.ValueOf(k), ev)
		}
	case reflect.Struct:
		m, ok := in.(map[string]any)
		if !ok {
			d.v.addf(path, "must be a table, not %s", tomlType(in))
			return
		}
		fields := structFields(rv.Type())
		for _, k := range sortedKeys(m) {
			i, ok := fields[k]
			if !ok {
				d.v.addf(join(path, k), "unknown key (valid keys%s: %s)", where(path), strings.Join(knownKeys(rv.Type()), ", "))
				continue
			}
			if path == "" && k == "retention" {
				continue // decoded by decodeFile onto a zero policy
			}
			d.value(m[k], rv.Field(i), join(path, k))
		}
	default:
		d.v.addf(path, "cannot be decoded (unsupported type %s)", rv.Type())
	}
}

func (d *decoder) slice(in any, rv reflect.Value, path string) {
	var elems []any
	switch a := in.(type) {
	case []any:
		elems = a
	case []map[string]any:
		for _, m := range a {
			elems = append(elems, m)
		}
	default:
		d.v.addf(path, "must be an array, not %s", tomlType(in))
		return
	}
	out := reflect.MakeSlice(rv.Type(), len(elems), len(elems))
	for i, e := range elems {
		ev := out.Index(i)
		setDefaults(ev)
		d.value(e, ev, path+"["+strconv.Itoa(i)+"]")
	}
	rv.Set(out)
}

// setDefaults fills a new element of a slice or map with its defaults.
func setDefaults(v reflect.Value) {
	switch p := v.Addr().Interface().(type) {
	case *Database:
		*p = defaultDatabase()
	case *Hook:
		*p = defaultHook()
	case *Target:
		*p = defaultTarget()
	}
}

func where(path string) string {
	if path == "" {
		return " at the top level"
	}
	return " in " + path
}

func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			m[tag] = i
		}
	}
	return m
}

func knownKeys(t reflect.Type) []string {
	var ks []string
	for k := range structFields(t) {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date/time"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// ParseDuration parses a non-negative duration in Go's syntax ("1h30m")
// extended with the units "d" (24h) and "w" (7 days): "7d", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration; write e.g. \"30s\", \"10m\", \"7d\"")
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, fmt.Errorf("invalid duration %q: must not be signed", orig)
	}
	if s == "0" {
		return 0, nil
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		num, unit := s[:i], s[i:j]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("invalid duration %q: use a number and a unit (s, m, h, d, w), e.g. \"30s\"", orig)
		}
		var part time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: %q is not a number", orig, num)
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			if f*float64(day) > math.MaxInt64/2 {
				return 0, fmt.Errorf("invalid duration %q: too long", orig)
			}
			part = time.Duration(f * float64(day))
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q: unknown unit %q (use ms, s, m, h, d or w)", orig, unit)
			}
			part = d
		}
		if total > math.MaxInt64/2-part {
			return 0, fmt.Errorf("invalid duration %q: too long", orig)
		}
		total += part
		s = s[j:]
	}
	return total, nil
}

// ParseRate parses a bandwidth in bytes per second: "0", "500KB", "20MiB",
// "1GB" (K/M/G powers of 1000, Ki/Mi/Gi powers of 1024; the "B" and a "/s"
// suffix are optional).
func ParseRate(s string) (Rate, error) {
	orig := s
	s = strings.TrimSuffix(strings.TrimSpace(s), "/s")
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid rate %q: write e.g. \"20MiB\" (bytes per second) or \"0\" for unlimited", orig)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1e3, "KB": 1e3, "k": 1e3, "kB": 1e3, "KiB": 1 << 10, "Ki": 1 << 10,
		"M": 1e6, "MB": 1e6, "MiB": 1 << 20, "Mi": 1 << 20,
		"G": 1e9, "GB": 1e9, "GiB": 1 << 30, "Gi": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("invalid rate %q: unknown unit %q (use B, KB, KiB, MB, MiB, GB or GiB)", orig, unit)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid rate %q: too large", orig)
	}
	return Rate(v), nil
}
