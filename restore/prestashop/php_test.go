package prestashop

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// phpBinary returns the PHP CLI when installed. PHP cross-checks the Go
// parser; it is not a dependency of the product. Without it the test skips
// on a developer box and fails under CI=true (.ci/run installs php-cli).
func phpBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("php CLI not installed: .ci/run installs php-cli so this cross-check runs in CI")
		}
		t.Skip("php CLI not installed: the cross-check of rewritten files against real PHP is skipped")
	}
	return p
}

// phpEval runs code with the PHP CLI and decodes its JSON output.
func phpEval(t *testing.T, php, code string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(php, append([]string{"-n", "-r", code}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("php output %q: %v", out, err)
	}
	return m
}

// TestRewrittenFilesLoadInPHP proves with the real PHP interpreter that the
// rewritten files are valid PHP holding the staging credentials and the
// original secrets.
func TestRewrittenFilesLoadInPHP(t *testing.T) {
	php := phpBinary(t)
	passwords := []string{stagingPassword, `'`, `\`, `\\'`, `a'b\'c\\`, "tab\there", `"$x{$y}"`, "ünïcødé", ""}
	for _, shopName := range []string{"shop17", "shop8", "shop9"} {
		for _, pw := range passwords {
			root := copyTree(t, shopName)
			shop, err := Detect(root)
			if err != nil {
				t.Fatal(err)
			}
			orig := phpEval(t, php, `echo json_encode((require $argv[1])['parameters']);`, filepath.Join(root, ParametersFile))
			tg := target()
			tg.DBPassword = pw
			if _, err := RewriteFiles(shop, tg); err != nil {
				t.Fatalf("%s %q: %v", shopName, pw, err)
			}
			got := phpEval(t, php, `echo json_encode((require $argv[1])['parameters']);`, filepath.Join(root, ParametersFile))
			for k, v := range orig {
				want := v
				switch k {
				case "database_host":
					want = tg.DBHost
				case "database_port":
					want = "3307"
				case "database_name":
					want = tg.DBName
				case "database_user":
					want = tg.DBUser
				case "database_password":
					want = pw
				}
				if !jsonEqual(got[k], want) {
					t.Errorf("%s password %q: PHP reads %s = %#v, want %#v", shopName, pw, k, got[k], want)
				}
			}
			if len(got) != len(orig) {
				t.Errorf("%s: %d parameters, was %d", shopName, len(got), len(orig))
			}
		}
	}
	// 1.6 settings.inc.php.
	for _, pw := range passwords {
		root := copyTree(t, "shop16")
		shop, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		tg := target()
		tg.DBPassword = pw
		if _, err := RewriteFiles(shop, tg); err != nil {
			t.Fatal(err)
		}
		got := phpEval(t, php, `require $argv[1]; echo json_encode(['server' => _DB_SERVER_, 'pw' => _DB_PASSWD_, 'key' => _COOKIE_KEY_, 'iv' => _COOKIE_IV_, 'prefix' => _DB_PREFIX_]);`, filepath.Join(root, SettingsFile))
		want := map[string]any{"server": "127.0.0.1:3307", "pw": pw, "key": "TEST_ONLY_cookie_key_0123456789abcdefghijklmnopqrstuvwxyzAB", "iv": "TESTIV16", "prefix": "ps16_"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("1.6 password %q: PHP reads %s = %#v, want %#v", pw, k, got[k], v)
			}
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestParserAgreesWithPHP compares the Go reading of tricky literals with
// PHP's own.
func TestParserAgreesWithPHP(t *testing.T) {
	php := phpBinary(t)
	values := []string{
		`'plain'`, `'it\'s'`, `'back\\slash'`, `'lone\back'`, `'trail\\'`, `"dq\n\t\\\$\"x"`, `"\x41\101\u{1F600}"`,
		`'a' . 'b' . "c"`, `NULL`, `true`, `false`, `3306`, `-1`, `''`, `"\e\v\f\0"`, `"\xZZ\8"`,
	}
	for _, v := range values {
		src := "<?php return array('parameters' => array('k' => " + v + "));"
		f := filepath.Join(t.TempDir(), "p.php")
		os.WriteFile(f, []byte(src), 0o644)
		got := phpEval(t, php, `echo json_encode(['v' => (string)(require $argv[1])['parameters']['k']]);`, f)
		pf, err := parseParameters([]byte(src))
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		val, _ := pf.params.get("k")
		lit, ok := val.literal()
		if !ok {
			t.Errorf("%s: not read as a literal", v)
			continue
		}
		if lit != got["v"] {
			t.Errorf("%s: Go reads %q, PHP reads %q", v, lit, got["v"])
		}
	}
}

func TestPHPQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "'", `\`, `\'`, `'\`, `a\\b`, "nul\x00byte", "multi\nline"} {
		q := phpQuote(s)
		if got := decodeSingleQuoted(q); got != s {
			t.Errorf("phpQuote(%q) = %s reads back %q", s, q, got)
		}
	}
	if got := phpQuote(`it's a \ path`); got != `'it\'s a \\ path'` {
		t.Errorf("phpQuote = %s", got)
	}
}

func TestParseDotenv(t *testing.T) {
	src := "# comment\n" +
		"A=plain\n" +
		"export B='single $NOT \\n'\n" +
		"C=\"double \\\"q\\\" \\\\ back\"\n" +
		"D=value # comment\n" +
		"E=\n" +
		"F='it'\"'\"'s'\n" +
		"G=\"with $VAR\"\n" +
		"H=a#b\n" +
		"I=\"\\$escaped\"\n"
	got, err := parseDotenv([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, value string
		literal     bool
	}{
		{"A", "plain", true},
		{"B", `single $NOT \n`, true},
		{"C", `double "q" \ back`, true},
		{"D", "value", true},
		{"E", "", true},
		{"F", "it's", true},
		{"G", "", false},
		{"H", "a#b", true},
		{"I", "$escaped", true},
	}
	if len(got) != len(want) {
		t.Fatalf("%d assignments, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].name != w.name || got[i].literal != w.literal || w.literal && got[i].value != w.value {
			t.Errorf("%d: got %s=%q literal=%v, want %s=%q literal=%v", i, got[i].name, got[i].value, got[i].literal, w.name, w.value, w.literal)
		}
	}
	for _, bad := range []string{"A B=1\n", "A='open\n", "A=two words\n", "A\n"} {
		if _, err := parseDotenv([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, _, err := setDotenv([]byte("PS_DATABASE_PASSWORD=x\n"), map[string]string{"PS_DATABASE_PASSWORD": "line\nbreak"}); err == nil {
		t.Error("a value with a line break was written into .env")
	}
}

// FuzzParseParameters feeds arbitrary bytes to the parameters.php reader.
// It must never panic, and whenever it accepts a file, replacing any
// non-array value must succeed and read back exactly, every other entry
// byte-for-byte unchanged (setParameters checks that itself and fails with
// an "internal error" otherwise).
func FuzzParseParameters(f *testing.F) {
	for _, p := range []string{"shop17", "shop8", "shop9"} {
		b, err := os.ReadFile(filepath.Join("testdata", p, ParametersFile))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "database_password", `new'pw\`)
	}
	f.Add([]byte("<?php return ['parameters' => ['database_user' => getenv('X'), 'k' => [1, 2]]];"), "database_user", "u")
	f.Add([]byte("<?php return array('parameters' => array('a' => 'x' . \"y\", 0 => NULL, 'b' => -1.5e3,));?>\n"), "a", "")
	f.Add([]byte("<?php\n// c\n/* d */ # e\nreturn ['parameters' => ['a' => \"\\x41\"]];"), "a", "$")
	f.Fuzz(func(t *testing.T, src []byte, key, value string) {
		pf, err := parseParameters(src)
		if err != nil {
			return
		}
		v, ok := pf.params.get(key)
		out, err := setParameters(src, map[string]string{key: value})
		switch {
		case !ok:
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("missing key %q: err = %v", key, err)
			}
		case v.kind == kindArray:
			if err == nil {
				t.Fatalf("array value of %q replaced", key)
			}
		case err != nil:
			t.Fatalf("set %q on an accepted file: %v", key, err)
		default:
			again, err := parseParameters(out)
			if err != nil {
				t.Fatalf("rewritten file does not parse: %v\n%s", err, out)
			}
			nv, _ := again.params.get(key)
			if lit, ok := nv.literal(); !ok || lit != value {
				t.Fatalf("%q reads back %q", key, lit)
			}
		}
	})
}

// FuzzParseDotenv: never panic; an accepted file with an assignment takes
// any value without a line break and reads it back.
func FuzzParseDotenv(f *testing.F) {
	b, err := os.ReadFile("testdata/shop9/.env")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "it's \"x\" \\ $y")
	f.Add([]byte("A='x'\"y\"z # c\nB=\n"), "")
	f.Fuzz(func(t *testing.T, src []byte, value string) {
		assigns, err := parseDotenv(src)
		if err != nil || len(assigns) == 0 {
			return
		}
		name := assigns[0].name
		out, _, err := setDotenv(src, map[string]string{name: value})
		if strings.ContainsAny(value, "\r\n\x00") {
			if err == nil {
				t.Fatal("line break accepted")
			}
			return
		}
		if err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
		again, err := parseDotenv(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range again {
			if a.name == name && (a.value != value || !a.literal) {
				t.Fatalf("%s reads back %q", name, a.value)
			}
		}
	})
}

// FuzzParseDefines: the settings.inc.php reader never panics, and
// replacing a defined constant reads back.
func FuzzParseDefines(f *testing.F) {
	b, err := os.ReadFile("testdata/shop16/config/settings.inc.php")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "_DB_PASSWD_", `x'\y`)
	f.Fuzz(func(t *testing.T, src []byte, name, value string) {
		defs, err := parseDefines(src)
		if err != nil {
			return
		}
		found := false
		for _, d := range defs {
			found = found || d.name == name
		}
		_, err = setDefines(src, map[string]string{name: value})
		if found && err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
		if !found && err == nil {
			t.Fatalf("set undefined %s succeeded", name)
		}
	})
}

func TestSetParametersDuplicateKey(t *testing.T) {
	src := "<?php return array('parameters' => array('database_name' => 'a', 'x' => 1, 'database_name' => 'b'));"
	out, err := setParameters([]byte(src), map[string]string{"database_name": "new"})
	if err != nil {
		t.Fatal(err)
	}
	want := "<?php return array('parameters' => array('database_name' => 'new', 'x' => 1, 'database_name' => 'new'));"
	if string(out) != want {
		t.Errorf("got %s", out)
	}
}
