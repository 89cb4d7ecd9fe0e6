package dump

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAppendValue(t *testing.T) {
	tests := []struct {
		v    []byte
		k    kind
		want string
	}{
		{nil, kindString, "NULL"},
		{nil, kindHex, "NULL"},
		{nil, kindNumber, "NULL"},
		{[]byte{}, kindString, "''"},
		{[]byte{}, kindHex, "''"},
		{[]byte("it's \"q\" \\ \n\r\x00\x1a end"), kindString, `'it\'s \"q\" \\ \n\r\0\Z end'`},
		{[]byte("emoji 😀 tab\t"), kindString, "'emoji 😀 tab\t'"},
		{[]byte{0x00, 0xff, 0x10}, kindHex, "0x00ff10"},
		{[]byte("-12.500"), kindNumber, "-12.500"},
		{[]byte("0000-00-00 00:00:00"), kindString, "'0000-00-00 00:00:00'"},
	}
	for _, tt := range tests {
		got := string(appendValue([]byte("x"), tt.v, tt.k))
		if got != "x"+tt.want {
			t.Errorf("appendValue(%q, %d) = %s, want %s", tt.v, tt.k, got[1:], tt.want)
		}
	}
}

// TestEscapeRoundTrip decodes the escaped literal the way the server does and compares.
func TestEscapeRoundTrip(t *testing.T) {
	unescape := map[byte]byte{'0': 0, 'n': '\n', 'r': '\r', '\\': '\\', '\'': '\'', '"': '"', 'Z': 0x1a}
	for i := 0; i < 256; i++ {
		in := []byte{'a', byte(i), 'b', byte(i)}
		lit := appendValue(nil, in, kindString)
		if lit[0] != '\'' || lit[len(lit)-1] != '\'' {
			t.Fatalf("not quoted: %q", lit)
		}
		var out []byte
		body := lit[1 : len(lit)-1]
		for j := 0; j < len(body); j++ {
			c := body[j]
			if c == '\'' {
				t.Fatalf("unescaped quote in %q", lit)
			}
			if c == '\\' {
				j++
				d, ok := unescape[body[j]]
				if !ok {
					t.Fatalf("unknown escape \\%c", body[j])
				}
				out = append(out, d)
				continue
			}
			out = append(out, c)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("byte %#x: round trip %q -> %q -> %q", i, in, lit, out)
		}
	}
}

func TestColumnKind(t *testing.T) {
	for dt, want := range map[string]kind{
		"int": kindNumber, "decimal": kindNumber, "double": kindNumber, "year": kindNumber,
		"varchar": kindString, "datetime": kindString, "json": kindString, "longtext": kindString, "enum": kindString,
		"inet6": kindString, "uuid": kindString,
		"blob": kindHex, "varbinary": kindHex, "bit": kindHex, "point": kindHex, "geometry": kindHex,
	} {
		if got := columnKind(dt, "utf8mb4"); got != want {
			t.Errorf("columnKind(%s) = %d, want %d", dt, got, want)
		}
	}
	if columnKind("varchar", "binary") != kindHex {
		t.Errorf("binary charset varchar must be hex")
	}
}

func TestDigestOrderIndependent(t *testing.T) {
	rows := []string{"(1,'a')", "(2,'b')", "(3,NULL)", "(3,NULL)"}
	var a, b, c digest
	for _, r := range rows {
		a.add([]byte(r))
	}
	for i := len(rows) - 1; i >= 0; i-- {
		b.add([]byte(rows[i]))
	}
	for _, r := range rows[:3] {
		c.add([]byte(r))
	}
	c.add([]byte("(3,'')"))
	if a.String() != b.String() || a.rows != 4 {
		t.Errorf("digest depends on order")
	}
	if a.String() == c.String() {
		t.Errorf("NULL and '' digest the same")
	}
}

func TestTableStreamName(t *testing.T) {
	for in, want := range map[string]string{
		"ps_orders":     "tables/ps_orders.sql",
		"weird/name.x":  "tables/weird%2Fname%2Ex.sql",
		"..":            "tables/%2E%2E.sql",
		"Ünï cøde $-_1": "tables/%C3%9Cn%C3%AF%20c%C3%B8de%20$-_1.sql",
	} {
		if got := TableStreamName(in); got != want {
			t.Errorf("TableStreamName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	good := map[string]Address{
		"unix(/run/mysqld/mysqld.sock)/prestashop": {Net: "unix", Addr: "/run/mysqld/mysqld.sock", DBName: "prestashop"},
		"tcp(127.0.0.1:3306)/prestashop_copy":      {Net: "tcp", Addr: "127.0.0.1:3306", DBName: "prestashop_copy"},
		"tcp(db.example.com)":                      {Net: "tcp", Addr: "db.example.com:3306"},
		"tcp([::1]:3307)/x":                        {Net: "tcp", Addr: "[::1]:3307", DBName: "x"},
		"/shop":                                    {DBName: "shop"},
		"":                                         {},
	}
	for in, want := range good {
		got, err := ParseAddress(in)
		if err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if in != "" && !strings.Contains(in, "db.example.com") {
			if back, err := ParseAddress(got.String()); err != nil || back != got {
				t.Errorf("String round trip of %q: %q -> %+v, %v", in, got.String(), back, err)
			}
		}
	}
	for _, in := range []string{
		"root:secret@unix(/run/mysqld/mysqld.sock)/shop", "user@tcp(h:1)/x", "udp(h:1)/x", "tcp(h:99999)/x",
		"unix()/x", "tcp(h:1", "shop", "tcp(h:1)/a/b", "tcp(h:1)/x?tls=true",
	} {
		if _, err := ParseAddress(in); err == nil {
			t.Errorf("ParseAddress(%q): no error", in)
		}
	}
	if _, err := ParseAddress("root:pw@unix(/s)/x"); err == nil || !strings.Contains(err.Error(), "option file") {
		t.Errorf("credentials error must point to the option file: %v", err)
	}
}

func TestAddressConfig(t *testing.T) {
	a, _ := ParseAddress("/shop")
	cfg := a.Config(Credentials{User: "u", Password: "p", Host: "db.local", Port: 3307})
	if cfg.Net != "tcp" || cfg.Addr != "db.local:3307" || cfg.User != "u" || cfg.Passwd != "p" || cfg.DBName != "shop" {
		t.Errorf("config from credentials host: %+v", cfg)
	}
	cfg = a.Config(Credentials{Host: "localhost"})
	if cfg.Net != "unix" || cfg.Addr != DefaultSocket || cfg.User != "root" {
		t.Errorf("localhost means the socket: %+v", cfg)
	}
	a, _ = ParseAddress("unix(/tmp/s.sock)/x")
	if cfg := a.Config(Credentials{Host: "elsewhere", Socket: "/other"}); cfg.Addr != "/tmp/s.sock" {
		t.Errorf("address must win over credentials: %+v", cfg)
	}
}

func TestReadOptionFile(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "inc.cnf")
	os.WriteFile(inc, []byte("[client]\nport = 3310\n"), 0o600)
	os.Mkdir(filepath.Join(dir, "d"), 0o700)
	os.WriteFile(filepath.Join(dir, "d", "z.cnf"), []byte("[mysql]\nsocket=/run/z.sock\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "d", "ignored.txt"), []byte("[client]\nuser=nobody\n"), 0o600)
	main := filepath.Join(dir, "my.cnf")
	content := `# comment
; other comment
[mysqld]
user = mysql
password = server-side

[client]
user = shop_admin
password = "pa#ss 'word'"  # trailing comment
host=db.local
!include ` + inc + `
!includedir ` + filepath.Join(dir, "d") + `
[client-server]
loose_socket = /run/a.sock
[mariadb]
skip-ssl
[client]
password=p\sa\\ss\tx#cut here
`
	os.WriteFile(main, []byte(content), 0o600)
	c, err := ReadOptionFile(main)
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{User: "shop_admin", Password: "p a\\ss\tx", Host: "db.local", Socket: "/run/a.sock", Port: 3310}
	if c != want {
		t.Errorf("got %+v\nwant %+v", c, want)
	}

	// Quoted password with '#'.
	os.WriteFile(main, []byte("[client]\npassword = \"pa#ss 'word'\"  # c\n"), 0o600)
	if c, err := ReadOptionFile(main); err != nil || c.Password != "pa#ss 'word'" {
		t.Errorf("quoted password: %q, %v", c.Password, err)
	}

	for name, bad := range map[string]string{
		"bad port":        "[client]\nport=abc\n",
		"password prompt": "[client]\npassword\n",
		"bad section":     "[client\nuser=x\n",
		"bad directive":   "!includex /x\n",
		"missing include": "!include /nonexistent/x.cnf\n",
		"include loop":    "!include " + main + "\n",
	} {
		os.WriteFile(main, []byte(bad), 0o600)
		if _, err := ReadOptionFile(main); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	os.WriteFile(main, []byte("[client]\nport=abc\n"), 0o600)
	_, err = ReadOptionFile(main)
	var oe *OptionFileError
	if !errors.As(err, &oe) || oe.Line != 2 {
		t.Errorf("error %v: want an OptionFileError on line 2", err)
	}
	if _, err := ReadOptionFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzReadOptionFile(f *testing.F) {
	f.Add([]byte("[client]\nuser=a\npassword=\"b#c\" # x\nport=3306\n"))
	f.Add([]byte("[mysql]\nhost = 'h'\nsocket=/s\\n\n!include x\n"))
	f.Add([]byte("[client\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Credentials
		err := parseOptions(data, "fuzz.cnf", &c, nil)
		if err == nil && (c.Port < 0 || c.Port > 65535) {
			t.Fatalf("port %d accepted", c.Port)
		}
	})
}

func splitAll(t *testing.T, in string, r io.Reader) []string {
	t.Helper()
	if r == nil {
		r = strings.NewReader(in)
	}
	sr := NewStatementReader(r)
	var out []string
	for {
		s, err := sr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("split %q: %v", in, err)
		}
		out = append(out, strings.TrimSpace(string(s)))
	}
}

func TestStatementReader(t *testing.T) {
	in := "-- header; with semicolon\nSET a = 1;\n" +
		"INSERT INTO t VALUES ('x;y', \"q;\\\"\", `b;``c`, 'it''s;', 'bs\\\\');\n" +
		"/* block; comment */\n/*!40101 SET x = 2 */;\n" +
		"# hash; comment\n" +
		"DELIMITER ;;\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END;;\nDELIMITER ;\n" +
		"select 3 -- trailing; \n; ; \nselect 1-1;select 4"
	want := []string{
		"-- header; with semicolon\nSET a = 1",
		"INSERT INTO t VALUES ('x;y', \"q;\\\"\", `b;``c`, 'it''s;', 'bs\\\\')",
		"/* block; comment */\n/*!40101 SET x = 2 */",
		"CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END",
		"select 3 -- trailing;",
		"select 1-1",
		"select 4",
	}
	got := splitAll(t, in, nil)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Same result when the input arrives one byte at a time.
	got = splitAll(t, in, iotest.OneByteReader(strings.NewReader(in)))
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("one byte reader: got %q", got)
	}
	// A statement bigger than the initial buffer.
	big := "INSERT INTO t VALUES ('" + strings.Repeat("x;", 100000) + "');SELECT 1;"
	if got := splitAll(t, big, nil); len(got) != 2 || len(got[0]) != len(big)-len(";SELECT 1;") {
		t.Errorf("big statement split wrong: %d parts", len(got))
	}
	if _, err := NewStatementReader(strings.NewReader("SELECT 'unterminated")).Next(); err == nil {
		t.Errorf("unterminated string: no error")
	}
	// Line numbers count the newlines inside quoted strings and identifiers, escaped or not.
	lines := "SELECT 'a\nb\\\nc';\nSELECT \"x\ny\", `i\nj`;\nSELECT 'unterminated"
	sr := NewStatementReader(strings.NewReader(lines))
	for {
		if _, err := sr.Next(); err != nil {
			if err == io.EOF || !strings.Contains(err.Error(), "line 7:") {
				t.Errorf("unterminated string on line 7: err = %v", err)
			}
			break
		}
	}
}

func FuzzStatementReader(f *testing.F) {
	f.Add("SELECT 'a;b'; SELECT 2")
	f.Add("DELIMITER $$\nCREATE x BEGIN; END$$\nDELIMITER ;\nSELECT 1;")
	f.Add("/* x */ -- y\n# z\n;")
	f.Fuzz(func(t *testing.T, in string) {
		whole := splitAllNoFail(strings.NewReader(in))
		byByte := splitAllNoFail(iotest.OneByteReader(strings.NewReader(in)))
		if strings.Join(whole, "\x00") != strings.Join(byByte, "\x00") {
			t.Fatalf("split depends on read sizes: %q vs %q", whole, byByte)
		}
		total := 0
		for _, s := range whole {
			if s != "ERR" {
				total += len(s)
			}
		}
		if total > len(in) {
			t.Fatalf("statements longer than input")
		}
	})
}

func splitAllNoFail(r io.Reader) []string {
	sr := NewStatementReader(r)
	var out []string
	for {
		s, err := sr.Next()
		if err != nil {
			if err != io.EOF {
				out = append(out, "ERR")
			}
			return out
		}
		out = append(out, string(s))
	}
}

func TestDeferIndexes(t *testing.T) {
	create := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `a` int(11) DEFAULT NULL,\n  `b` varchar(10) DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`),\n  UNIQUE KEY `u_b` (`b`),\n  KEY `k_a` (`a`,`b`),\n  KEY `k_id` (`id`,`a`),\n  FULLTEXT KEY `ft` (`b`)\n) ENGINE=InnoDB"
	nc, keys, ok := deferIndexes(create)
	if !ok {
		t.Fatal("not deferred")
	}
	wantKeys := []string{"UNIQUE KEY `u_b` (`b`)", "KEY `k_a` (`a`,`b`)"}
	if strings.Join(keys, "|") != strings.Join(wantKeys, "|") {
		t.Errorf("keys %q", keys)
	}
	wantCreate := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `a` int(11) DEFAULT NULL,\n  `b` varchar(10) DEFAULT NULL,\n" +
		"  PRIMARY KEY (`id`),\n  KEY `k_id` (`id`,`a`),\n  FULLTEXT KEY `ft` (`b`)\n) ENGINE=InnoDB"
	if nc != wantCreate {
		t.Errorf("create:\n%s\nwant:\n%s", nc, wantCreate)
	}
	fk := "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11),\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n  CONSTRAINT `f` FOREIGN KEY (`p`) REFERENCES `parent` (`id`)\n) ENGINE=InnoDB"
	if _, _, ok := deferIndexes(fk); ok {
		t.Errorf("foreign keys: must not defer")
	}
}

func TestOrderViews(t *testing.T) {
	defs := map[string]string{
		"a": "select * from `c`", "b": "select 1", "c": "select * from `b`",
	}
	got := orderViews([]string{"a", "b", "c"}, func(n string) string { return defs[n] })
	if strings.Join(got, ",") != "b,c,a" {
		t.Errorf("order %v", got)
	}
}

func TestGrantConcerns(t *testing.T) {
	p := map[string]bool{"shop": true, `shop\_db`: true}
	for g, want := range map[string]bool{
		"GRANT USAGE ON *.* TO `u`@`h`":                           true,
		"GRANT ALL PRIVILEGES ON `shop`.* TO `u`@`h`":             true,
		"GRANT SELECT ON `shop\\_db`.* TO `u`@`h`":                true,
		"GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `u`@`h`":        true,
		"GRANT SELECT ON `other`.* TO `u`@`h`":                    false,
		"GRANT `role` TO `u`@`h`":                                 false,
		"GRANT SELECT ON `shopx`.* TO `u`@`h`":                    false,
		"GRANT SELECT (`c`) ON `shop`.`t` TO `u`@`h`":             true,
		"GRANT SELECT ON `shop`.`t` TO `u`@`h` WITH GRANT OPTION": true,
	} {
		if got := grantConcerns(g, p); got != want {
			t.Errorf("grantConcerns(%q) = %v", g, got)
		}
	}
	if got := rewriteGrantDB("GRANT ALL ON `ps_prod`.* TO `u`@`h`", "ps_prod", "ps_stage"); got != "GRANT ALL ON `ps_stage`.* TO `u`@`h`" {
		t.Errorf("rewrite: %s", got)
	}
	if got := rewriteGrantDB("GRANT ALL ON `ps\\_prod`.* TO `u`@`h`", "ps_prod", "x"); got != "GRANT ALL ON `x`.* TO `u`@`h`" {
		t.Errorf("rewrite escaped: %s", got)
	}
}

func TestBackupStageSupported(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1-log": true, "10.4.0-MariaDB": true, "10.3.39-MariaDB": false,
		"11.4.2-MariaDB": true, "8.0.36": false, "5.7.44-log": false, "garbage": false,
	} {
		if got := backupStageSupported(v); got != want {
			t.Errorf("backupStageSupported(%q) = %v", v, got)
		}
	}
}

func TestPleskCredentials(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".psa.shadow")
	os.WriteFile(p, []byte("$AES-128-CBC$abc$def\n"), 0o600)
	c, err := PleskCredentials(p)
	if err != nil || c.User != "admin" || c.Password != "$AES-128-CBC$abc$def" || c.Host != "localhost" {
		t.Errorf("got %+v, %v", c, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := PleskCredentials(p); err == nil {
		t.Errorf("empty file: no error")
	}
	if _, err := PleskCredentials(p + "x"); err == nil || !strings.Contains(err.Error(), "Plesk") {
		t.Errorf("missing file: %v", err)
	}
}

func TestPauseStatsRecalc(t *testing.T) {
	plain := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
	got, ok := pauseStatsRecalc(plain)
	want := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) STATS_AUTO_RECALC=0 ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
	if !ok || got != want {
		t.Errorf("plain InnoDB table: ok %v\n%s\nwant\n%s", ok, got, want)
	}
	part := "CREATE TABLE `p` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB DEFAULT CHARSET=latin1\n PARTITION BY HASH (`id`)\nPARTITIONS 4"
	if got, ok := pauseStatsRecalc(part); !ok || !strings.HasPrefix(got, "CREATE TABLE `p` (\n  `id` int(11) NOT NULL\n) STATS_AUTO_RECALC=0 ENGINE=InnoDB") || !strings.HasSuffix(got, "\nPARTITIONS 4") {
		t.Errorf("partitioned table: ok %v\n%s", ok, got)
	}
	for name, create := range map[string]string{
		"own STATS_AUTO_RECALC": "CREATE TABLE `t` (\n  `id` int(11)\n) ENGINE=InnoDB STATS_AUTO_RECALC=1",
		"own STATS_PERSISTENT":  "CREATE TABLE `t` (\n  `id` int(11)\n) ENGINE=InnoDB STATS_PERSISTENT=0",
		"Aria":                  "CREATE TABLE `t` (\n  `id` int(11)\n) ENGINE=Aria PAGE_CHECKSUM=1",
		"InnoDB lookalike":      "CREATE TABLE `t` (\n  `id` int(11)\n) ENGINE=InnoDBx",
		"unknown shape":         "CREATE TABLE t (id int) ENGINE=InnoDB",
		"two option lines":      "CREATE TABLE `t` (\n  `c` text DEFAULT '\n) ENGINE=InnoDB'\n) ENGINE=InnoDB",
	} {
		if got, ok := pauseStatsRecalc(create); ok || got != create {
			t.Errorf("%s: changed to\n%s", name, got)
		}
	}
}
