package integration

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/integration/mariadbtest"
)

// edgeSchema creates tables with every kind of value a dump must keep exact.
var edgeSchema = []string{
	`CREATE TABLE every_type (
		id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
		v_null_vs_empty VARCHAR(20) NULL,
		v_text TEXT,
		v_emoji VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
		v_latin1 VARCHAR(50) CHARACTER SET latin1,
		v_char CHAR(10),
		v_binary BINARY(8),
		v_varbinary VARBINARY(64),
		v_blob LONGBLOB,
		v_longtext LONGTEXT,
		v_bit1 BIT(1),
		v_bit64 BIT(64),
		v_tiny TINYINT,
		v_ubig BIGINT UNSIGNED,
		v_big BIGINT,
		v_dec DECIMAL(65,30),
		v_dec2 DECIMAL(20,6),
		v_float FLOAT,
		v_double DOUBLE,
		v_date DATE,
		v_datetime DATETIME(6),
		v_zero_dt DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00',
		v_ts TIMESTAMP NULL DEFAULT NULL,
		v_time TIME(3),
		v_year YEAR,
		v_json JSON,
		v_enum ENUM('a','b','c'),
		v_set SET('x','y','z'),
		v_inet6 INET6,
		v_uuid UUID,
		v_point POINT,
		v_invisible INT INVISIBLE DEFAULT 7,
		v_gen_virtual VARCHAR(60) AS (CONCAT(v_char, '!')) VIRTUAL,
		v_gen_stored INT AS (v_tiny * 2) STORED,
		KEY k_dec (v_dec2),
		UNIQUE KEY u_uuid (v_uuid)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE no_key (a INT, b VARCHAR(10), c BLOB) ENGINE=InnoDB`,
	`CREATE TABLE uniq_only (code VARCHAR(10) NOT NULL, n INT, UNIQUE KEY (code)) ENGINE=InnoDB`,
	`CREATE TABLE aria_t (id INT PRIMARY KEY, s VARCHAR(10)) ENGINE=Aria`,
	`CREATE TABLE myisam_t (id INT PRIMARY KEY, s VARCHAR(10)) ENGINE=MyISAM`,
	`CREATE TABLE ` + "`weird/name.x`" + ` (id INT PRIMARY KEY) ENGINE=InnoDB`,
	`CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB`,
	`CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent(id)) ENGINE=InnoDB`,
	`CREATE TABLE empty_t (id INT PRIMARY KEY) ENGINE=InnoDB`,
	`CREATE VIEW v_base AS SELECT id, v_char FROM every_type`,
	`CREATE VIEW v_on_view AS SELECT id FROM v_base WHERE id > 1`,
	"CREATE TRIGGER trg_child BEFORE INSERT ON child FOR EACH ROW BEGIN\n  IF NEW.pid IS NULL THEN SET NEW.pid = 1; END IF;\nEND",
	"CREATE PROCEDURE p_count(OUT n INT) BEGIN\n  SELECT COUNT(*) INTO n FROM every_type; -- comment; with semicolon\nEND",
	"CREATE FUNCTION f_twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
	"CREATE EVENT ev_nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM no_key WHERE a < 0",
}

var edgeRows = []string{
	`INSERT INTO every_type (v_null_vs_empty, v_text, v_emoji, v_latin1, v_char, v_binary, v_varbinary, v_blob, v_longtext,
		v_bit1, v_bit64, v_tiny, v_ubig, v_big, v_dec, v_dec2, v_float, v_double, v_date, v_datetime, v_zero_dt, v_ts, v_time,
		v_year, v_json, v_enum, v_set, v_inet6, v_uuid, v_point) VALUES
	('', 'quote '' dq " bs \\ nl \n cr \r tab \t nul \0 ctrlz \Z end', 'emoji 😀🛒 ü', 'café ÿ', 'pad', 0x00FF00, 0x0000, 0x00, '',
		b'1', b'1111111111111111111111111111111111111111111111111111111111111111', -128, 18446744073709551615, -9223372036854775808,
		'12345678901234567890123456789012345.123456789012345678901234567891', '-0.000001', 3.40282e38, -2.2250738585072014e-308,
		'0000-00-00', '2024-02-29 23:59:59.999999', '0000-00-00 00:00:00', '2038-01-19 03:14:07', '-838:59:59.000',
		2155, '{"a": [1, 2.5, "x\\"y"], "b": null}', 'b', 'x,z', '::1', '123e4567-e89b-12d3-a456-426614174000', POINT(1.5, -2.25)),
	(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
		DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	('x', '', '', '', '', '', '', '', '', b'0', b'0', 0, 0, 0, 0, 0, 0, 0, '1000-01-01', '1000-01-01 00:00:00', '2000-01-01', '1970-01-01 00:00:01',
		'00:00:00', 1901, '[]', '', '', '2001:db8::ff00:42:8329', '00000000-0000-0000-0000-000000000000', POINT(0, 0))`,
	// Rows of several MB (bigger than a statement).
	`INSERT INTO every_type (v_blob, v_longtext) VALUES (RANDOM_BYTES(1024) , REPEAT('long text ✓ ', 300000))`,
	`UPDATE every_type SET v_blob = REPEAT(RANDOM_BYTES(1024), 3000) WHERE id = 4`,
	`INSERT INTO no_key VALUES (1, 'a', NULL), (1, 'a', NULL), (1, 'a', ''), (NULL, NULL, NULL), (2, 'b', 0x01)`,
	`INSERT INTO uniq_only VALUES ('b', 2), ('a', 1), ('c', NULL)`,
	`INSERT INTO aria_t VALUES (1, 'x'), (2, NULL)`,
	`INSERT INTO myisam_t VALUES (1, 'y')`,
	"INSERT INTO `weird/name.x` VALUES (1), (2)",
	`INSERT INTO parent VALUES (1), (2)`,
	`INSERT INTO child VALUES (1, 1), (2, 2)`,
	`INSERT INTO every_type (id, v_char) VALUES (0, 'zero id')`,
}

func TestDumpEdgeCasesExact(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE edge CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
	s.Exec(t, "edge", "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
	db := s.DB(t, "edge")
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range append(append([]string{"SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'", "SET time_zone = '+02:00'"}, edgeSchema...), edgeRows...) {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	conn.Close()

	ctx := t.Context()
	store := newDumpMemStore()
	// Small statements, so that statement boundaries and big rows are exercised.
	m, err := dump.Dump(ctx, s.RootConfig(""), dump.Options{Databases: []string{"edge"}, Threads: 3, MaxStatementBytes: 4096}, store)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	md := m.Database("edge")
	byName := map[string]dump.Table{}
	for _, tb := range md.Tables {
		byName[tb.Name] = tb
	}
	et := byName["every_type"]
	if et.Rows != 5 {
		t.Errorf("every_type rows = %d, want 5", et.Rows)
	}
	for _, c := range et.Columns {
		if strings.HasPrefix(c, "v_gen") {
			t.Errorf("generated column %s is dumped", c)
		}
	}
	if !dumpContains(et.Columns, "v_invisible") {
		t.Errorf("invisible column not dumped: %v", et.Columns)
	}
	if tb := byName["aria_t"]; tb.Transactional || tb.Consistent {
		t.Errorf("aria table reported transactional/consistent: %+v", tb)
	}
	if tb := byName["no_key"]; tb.KeyOrder || tb.Rows != 5 {
		t.Errorf("no_key: %+v", tb)
	}
	if tb := byName["uniq_only"]; !tb.KeyOrder || strings.Join(tb.OrderBy, ",") != "code" {
		t.Errorf("uniq_only order: %+v", tb)
	}
	if len(md.Views) != 2 || len(md.Triggers) != 1 || len(md.Routines) != 2 || len(md.Events) != 1 {
		t.Errorf("objects: views %v triggers %v routines %v events %v", md.Views, md.Triggers, md.Routines, md.Events)
	}
	if tb := byName["weird/name.x"]; tb.Stream != "tables/weird%2Fname%2Ex.sql" {
		t.Errorf("stream name %q", tb.Stream)
	}
	// The big row is a statement of its own; others are bounded.
	body := store.streams["edge/"+et.Stream]
	for _, st := range bytes.Split(body, []byte(";\nINSERT")) {
		if len(st) > 4096+200 && bytes.Count(st, []byte("),\n(")) > 0 {
			t.Errorf("a statement of %d bytes holds several rows", len(st))
		}
	}
	if bytes.Contains(body, []byte("2026")) || bytes.Contains(body, []byte("edge")) {
		t.Errorf("table stream names the database or a date")
	}

	rep, err := dump.Load(ctx, s.RootConfig("edge_copy"), m, "edge", store, dump.LoadOptions{Threads: 2, DeferIndexes: true, DeferIndexesMinRows: 1})
	if err != nil {
		t.Errorf("load: %v", err) // go on: the comparison below shows what differs
	} else if rep.LoadDataStatements == 0 {
		t.Errorf("no statement loaded as LOAD DATA")
	}
	orig := dumpWithMariadbDump(t, s, "edge")
	dumpSame(t, "Load", orig, dumpWithMariadbDump(t, s, "edge_copy"))
	checkV1Digests(t, s, m, "edge", "edge_copy")
	if _, err := dump.Load(ctx, s.RootConfig("edge_ins"), m, "edge", store, dump.LoadOptions{Threads: 2, Inserts: true}); err != nil {
		t.Errorf("load with Inserts: %v", err)
	}
	dumpSame(t, "Load with Inserts", orig, dumpWithMariadbDump(t, s, "edge_ins"))

	dumpLoadWithClient(t, s, "edge_client", store.script(t, m, "edge"))
	dumpSame(t, "stock client", orig, dumpWithMariadbDump(t, s, "edge_client"))

	// Spot checks independent of any dump tool.
	var same int
	q := `SELECT COUNT(*) FROM edge.every_type a JOIN edge_copy.every_type b USING (id) WHERE
		a.v_null_vs_empty <=> b.v_null_vs_empty AND a.v_blob <=> b.v_blob AND a.v_longtext <=> b.v_longtext AND
		a.v_bit64 <=> b.v_bit64 AND a.v_dec <=> b.v_dec AND a.v_emoji <=> b.v_emoji AND a.v_ts <=> b.v_ts AND
		a.v_zero_dt <=> b.v_zero_dt AND a.v_gen_stored <=> b.v_gen_stored AND ST_AsText(a.v_point) <=> ST_AsText(b.v_point)
		AND a.v_invisible <=> b.v_invisible AND a.v_text <=> b.v_text`
	if err := s.DB(t, "").QueryRow(q).Scan(&same); err != nil || same != 5 {
		t.Fatalf("identical rows = %d (%v), want 5", same, err)
	}
	var isNull, isEmpty int
	if err := s.DB(t, "").QueryRow("SELECT SUM(v_null_vs_empty IS NULL), SUM(v_null_vs_empty = '') FROM edge_copy.every_type").Scan(&isNull, &isEmpty); err != nil || isNull != 3 || isEmpty != 1 {
		t.Errorf("NULL vs '': %d NULLs, %d empty (%v); want 3 and 1", isNull, isEmpty, err)
	}
}

// checkV1Digests verifies the loaded copy against a manifest whose digests are of the
// previous algorithm (sha256-multiset-v1, computed here on the original database), as the
// snapshots of earlier releases hold them; a wrong one must still be caught.
func checkV1Digests(t *testing.T, s *mariadbtest.Server, m *dump.Manifest, from, into string) {
	t.Helper()
	v1 := *m
	v1.DigestAlgorithm = dump.DigestSHA256
	v1.Databases = slices.Clone(m.Databases)
	var md *dump.Database
	for i := range v1.Databases {
		if v1.Databases[i].Name == from {
			md = &v1.Databases[i]
		}
	}
	if md == nil {
		t.Fatalf("database %s not in the manifest", from)
	}
	md.Tables = slices.Clone(md.Tables)
	for i, tb := range md.Tables {
		_, d, err := dump.TableDigest(t.Context(), s.DB(t, ""), dump.DigestSHA256, from, tb.Name, tb.Columns)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != 64 || d == tb.Digest {
			t.Fatalf("v1 digest of %s = %q (v2 %q)", tb.Name, d, tb.Digest)
		}
		md.Tables[i].Digest = d
	}
	if _, err := dump.VerifyDatabase(t.Context(), s.DB(t, ""), &v1, from, into); err != nil {
		t.Errorf("verify against v1 digests: %v", err)
	}
	md.Tables[0].Digest = strings.Repeat("0", 64)
	var ve *dump.VerifyError
	if _, err := dump.VerifyDatabase(t.Context(), s.DB(t, ""), &v1, from, into); !errors.As(err, &ve) || len(ve.Failed) != 1 {
		t.Errorf("verify against a wrong v1 digest: err = %v", err)
	}
}

func dumpContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDumpUsersAndGrants(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE ps_prod", "CREATE DATABASE other",
		"CREATE TABLE ps_prod.t (id INT PRIMARY KEY, secret INT)",
		"CREATE USER shop@localhost IDENTIFIED BY 'shop-pw'",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ps_prod.* TO shop@localhost",
		"GRANT SELECT (id) ON ps_prod.t TO 'reader'@'%' IDENTIFIED BY 'r'",
		"CREATE USER unrelated@localhost", "GRANT ALL ON other.* TO unrelated@localhost")
	ctx := t.Context()
	store := newDumpMemStore()
	m, err := dump.Dump(ctx, s.RootConfig("ps_prod"), dump.Options{}, store)
	if err != nil {
		t.Fatal(err)
	}
	md := m.Database("ps_prod")
	if strings.Join(md.Users, " ") != "'reader'@'%' 'shop'@'localhost'" || md.GrantsSkipped != "" {
		t.Fatalf("users %v (skipped: %s)", md.Users, md.GrantsSkipped)
	}
	s.Exec(t, "", "DROP USER shop@localhost", "DROP USER 'reader'@'%'")

	// A staging load creates no users.
	if _, err := dump.Load(ctx, s.RootConfig("ps_stage"), m, "ps_prod", store, dump.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB(t, "").QueryRow("SELECT COUNT(*) FROM mysql.user WHERE User IN ('shop', 'reader')").Scan(&n); err != nil || n != 0 {
		t.Fatalf("staging load created %d users (%v)", n, err)
	}
	// A full restore recreates them, with their password, on the restored database.
	if _, err := dump.Load(ctx, s.RootConfig("ps_full"), m, "ps_prod", store, dump.LoadOptions{Grants: true}); err != nil {
		t.Fatal(err)
	}
	var grants []string
	rows, err := s.DB(t, "").Query("SHOW GRANTS FOR shop@localhost")
	if err != nil {
		t.Fatalf("user not recreated: %v", err)
	}
	for rows.Next() {
		var g string
		rows.Scan(&g)
		grants = append(grants, g)
	}
	rows.Close()
	all := strings.Join(grants, "\n")
	if !strings.Contains(all, "ON `ps_full`.*") || strings.Contains(all, "`other`") {
		t.Errorf("grants after full restore:\n%s", all)
	}
	cfg := s.RootConfig("ps_full")
	cfg.User, cfg.Passwd = "shop", "shop-pw"
	m2, err := dump.Dump(ctx, cfg, dump.Options{}, newDumpMemStore())
	if err != nil {
		t.Fatalf("the restored user cannot log in with its password and read its database: %v", err)
	}
	// Without RELOAD it cannot hold commits: the dump falls back and says why.
	if m2.Method != dump.MethodSingle || !strings.Contains(m2.FallbackReason, "RELOAD") {
		t.Errorf("dump without RELOAD: method %s, reason %q", m2.Method, m2.FallbackReason)
	}
}

func TestDumpReportsUnsupported(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE u", "CREATE SEQUENCE u.seq_order", "CREATE TABLE u.t (id INT PRIMARY KEY) WITH SYSTEM VERSIONING",
		"INSERT INTO u.t VALUES (1)", "UPDATE u.t SET id = 2")
	store := newDumpMemStore()
	m, err := dump.Dump(t.Context(), s.RootConfig("u"), dump.Options{}, store)
	if err != nil {
		t.Fatal(err)
	}
	// The current rows of the versioned table load and verify.
	if _, err := dump.Load(t.Context(), s.RootConfig("u_copy"), m, "u", store, dump.LoadOptions{}); err != nil {
		t.Fatalf("load: %v", err)
	}
	sk := strings.Join(m.Database("u").Skipped, "\n")
	if !strings.Contains(sk, "seq_order") || !strings.Contains(sk, "history") {
		t.Errorf("skipped objects not reported: %q", sk)
	}
}
