package backup

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PrestaShopExcludes are excluded by default: caches that PrestaShop
// rebuilds by itself and that would otherwise change every night.
var PrestaShopExcludes = []string{
	"var/cache",            // 1.7 / 8 / 9 Symfony and Smarty caches
	"cache/smarty/compile", // 1.6 compiled templates
	"cache/smarty/cache",   // 1.6 template cache
	"cache/cachefs",        // 1.6 file cache
	"img/tmp",              // generated thumbnails
}

// Matcher decides which paths are excluded.
//
// A pattern without a leading "/" matches any trailing run of path
// components ("var/cache" matches /var/www/shop/var/cache, "*.log"
// matches any .log file); a pattern with a leading "/" matches from the
// root. Each component is matched with filepath.Match.
type Matcher struct {
	patterns [][]string
	anchored []bool
}

// NewMatcher validates patterns.
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		anchored := strings.HasPrefix(p, "/")
		parts := strings.Split(strings.Trim(filepath.Clean(p), "/"), "/")
		for _, part := range parts {
			if _, err := filepath.Match(part, ""); err != nil {
				return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
			}
		}
		m.patterns = append(m.patterns, parts)
		m.anchored = append(m.anchored, anchored)
	}
	return m, nil
}

// Excluded reports whether the absolute path p is excluded.
func (m *Matcher) Excluded(p string) bool {
	if m == nil || len(m.patterns) == 0 {
		return false
	}
	comps := strings.Split(strings.Trim(p, "/"), "/")
	for i, pat := range m.patterns {
		if len(pat) > len(comps) {
			continue
		}
		start := len(comps) - len(pat)
		if m.anchored[i] {
			if len(pat) != len(comps) {
				continue
			}
			start = 0
		}
		ok := true
		for j, part := range pat {
			if matched, _ := filepath.Match(part, comps[start+j]); !matched {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// ReadExcludeFile reads patterns, one per line; blank lines and lines
// starting with # are ignored.
func ReadExcludeFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("exclude file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("exclude file %s: %w", path, err)
	}
	return out, nil
}

// cacheDirTagSignature is the first line of a CACHEDIR.TAG
// (https://bford.info/cachedir/).
const cacheDirTagSignature = "Signature: 8a477f597d28d172789f06886806bc55"
