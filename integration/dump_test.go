package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/integration/mariadbtest"
)

// dumpMemStore is an in-memory dump.Sink and dump.Source.
type dumpMemStore struct {
	mu      sync.Mutex
	streams map[string][]byte
}

func newDumpMemStore() *dumpMemStore { return &dumpMemStore{streams: map[string][]byte{}} }

func (s *dumpMemStore) WriteStream(ctx context.Context, database, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := database + "/" + name
	if _, dup := s.streams[key]; dup {
		return fmt.Errorf("stream %s written twice", key)
	}
	s.streams[key] = b
	return nil
}

func (s *dumpMemStore) OpenStream(ctx context.Context, database, name string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.streams[database+"/"+name]
	if !ok {
		return nil, fmt.Errorf("stream %s/%s: %w", database, name, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// script concatenates the streams of database db in manifest load order, as a user would
// feed them to the stock client.
func (s *dumpMemStore) script(t *testing.T, m *dump.Manifest, db string) []byte {
	t.Helper()
	md := m.Database(db)
	if md == nil {
		t.Fatalf("database %s not in manifest", db)
	}
	var out bytes.Buffer
	for _, n := range md.Streams {
		if n == dump.StreamGrants {
			continue
		}
		b, ok := s.streams[db+"/"+n]
		if !ok {
			t.Fatalf("manifest lists stream %s/%s but the sink never got it", db, n)
		}
		out.Write(b)
	}
	return out.Bytes()
}

// dumpWithMariadbDump runs the stock mariadb-dump on db and returns its output with the database
// name in the header replaced by "DB".
func dumpWithMariadbDump(t *testing.T, s *mariadbtest.Server, db string, extra ...string) []byte {
	t.Helper()
	args := append([]string{"--skip-dump-date", "--hex-blob", "--routines", "--events", "--triggers", "--order-by-primary"}, extra...)
	args = append(args, db)
	cmd := s.Command(t, "mariadb-dump", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mariadb-dump %s: %v\n%s", db, err, stderr.String())
	}
	out = bytes.ReplaceAll(out, []byte("Database: "+db+"\n"), []byte("Database: DB\n"))
	return bytes.ReplaceAll(out, []byte("database '"+db+"'"), []byte("database 'DB'"))
}

// dumpSame fails the test showing the first differing lines of two mariadb-dump outputs.
func dumpSame(t *testing.T, what string, a, b []byte) {
	t.Helper()
	if bytes.Equal(a, b) {
		return
	}
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			// Show the lines from a little before their first difference.
			j := 0
			for j < len(x) && j < len(y) && x[j] == y[j] {
				j++
			}
			j = max(0, j-100)
			t.Fatalf("%s: mariadb-dump outputs differ at line %d, byte %d:\n original: %.300s\n copy:     %.300s", what, i+1, j, x[j:], y[j:])
		}
	}
}

func dumpLoadWithClient(t *testing.T, s *mariadbtest.Server, db string, script []byte) {
	t.Helper()
	s.Exec(t, "", "CREATE DATABASE "+db)
	cmd := s.Command(t, "mariadb", "--batch", "--comments", db)
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stock client load of the dump into %s: %v\n%s", db, err, out)
	}
}

func TestDumpPrestaShopRoundTrip(t *testing.T) {
	s := mariadbtest.Start(t)
	s.LoadPrestaShop(t, "ps")
	ctx := t.Context()
	store := newDumpMemStore()
	m, err := dump.Dump(ctx, s.RootConfig(""), dump.Options{Databases: []string{"ps"}, Threads: 2, Now: dumpFixedNow}, store)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	if m.Method != dump.MethodBackupStage || m.FallbackReason != "" {
		t.Errorf("method %q (%s), want %q on %s", m.Method, m.FallbackReason, dump.MethodBackupStage, m.ServerVersion)
	}
	if m.Binlog == nil || m.Binlog.File == "" || m.Binlog.GTID == "" {
		t.Errorf("binlog position not recorded: %+v", m.Binlog)
	}
	md := m.Database("ps")
	if md == nil || len(md.Tables) != 229 {
		t.Fatalf("manifest: %d tables, want 229", len(md.Tables))
	}
	var orders *dump.Table
	for i := range md.Tables {
		if md.Tables[i].Name == "ps_orders" {
			orders = &md.Tables[i]
		}
	}
	if orders == nil || orders.Rows != 3 || !orders.Consistent || orders.Stream != "tables/ps_orders.sql" {
		t.Fatalf("ps_orders in manifest: %+v", orders)
	}

	// The lead stores the manifest as JSON in the snapshot: load from a decoded copy.
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m = new(dump.Manifest)
	if err := json.Unmarshal(js, m); err != nil {
		t.Fatal(err)
	}
	rep, err := dump.Load(ctx, s.RootConfig("ps_copy"), m, "ps", store, dump.LoadOptions{Threads: 2})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if rep.Tables != 229 || len(rep.Checks) != 229 {
		t.Errorf("load report: %d tables, %d checks", rep.Tables, len(rep.Checks))
	}
	if rep.LoadDataStatements == 0 || rep.LoadDataStatements >= rep.Statements {
		t.Errorf("load report: %d of %d statements loaded as LOAD DATA, want some but not all", rep.LoadDataStatements, rep.Statements)
	}
	orig := dumpWithMariadbDump(t, s, "ps")
	dumpSame(t, "Load", orig, dumpWithMariadbDump(t, s, "ps_copy"))
	checkLoadedStats(t, s, md, "ps_copy")

	// The stock client loads the same streams to the same result.
	dumpLoadWithClient(t, s, "ps_client", store.script(t, m, "ps"))
	dumpSame(t, "stock client", orig, dumpWithMariadbDump(t, s, "ps_client"))

	// Loading again into a database with tables is refused...
	if _, err := dump.Load(ctx, s.RootConfig("ps_copy"), m, "ps", store, dump.LoadOptions{}); !errors.Is(err, dump.ErrNotEmpty) {
		t.Fatalf("load into non-empty database: err = %v, want ErrNotEmpty", err)
	}
	// ...unless asked to replace it; loading the INSERTs as they are gives the same result.
	rep, err = dump.Load(ctx, s.RootConfig("ps_copy"), m, "ps", store, dump.LoadOptions{DropExisting: true, Threads: 3, Inserts: true})
	if err != nil {
		t.Fatalf("load with DropExisting: %v", err)
	}
	if rep.LoadDataStatements != 0 {
		t.Errorf("Inserts: %d statements loaded as LOAD DATA", rep.LoadDataStatements)
	}
	dumpSame(t, "Load with Inserts", orig, dumpWithMariadbDump(t, s, "ps_copy"))

	// Verification catches a changed value and a missing row, naming the tables.
	s.Exec(t, "ps_copy", "UPDATE ps_orders SET total_paid = total_paid + 0.01 WHERE id_order = 2",
		"DELETE FROM ps_customer WHERE id_customer = 4")
	checks, err := dump.VerifyDatabase(ctx, s.DB(t, ""), m, "ps", "ps_copy")
	var ve *dump.VerifyError
	if !errors.As(err, &ve) || len(ve.Failed) != 2 {
		t.Fatalf("verify after changes: err = %v, want a VerifyError with 2 tables", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "ps_orders") || !strings.Contains(msg, "ps_customer") {
		t.Errorf("verify error does not name the tables: %s", msg)
	}
	if len(checks) != 229 {
		t.Errorf("%d checks", len(checks))
	}

	// A second dump of the unchanged database produces identical streams (dedup).
	store2 := newDumpMemStore()
	if _, err := dump.Dump(ctx, s.RootConfig("ps"), dump.Options{Threads: 1}, store2); err != nil {
		t.Fatalf("second dump: %v", err)
	}
	for k, v := range store.streams {
		if !bytes.Equal(v, store2.streams[k]) {
			t.Errorf("stream %s differs between two dumps of unchanged data", k)
		}
	}
}

func dumpFixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// checkLoadedStats checks that Load left every table of md in database db with its own
// options (no STATS_AUTO_RECALC of the load's) and with persistent statistics taken from
// all its rows (the PrestaShop seed's tables fit in one page, so the counts are exact).
func checkLoadedStats(t *testing.T, s *mariadbtest.Server, md *dump.Database, db string) {
	t.Helper()
	conn := s.DB(t, "")
	rows, err := conn.Query("SELECT table_name, create_options FROM information_schema.TABLES WHERE table_schema = ? AND create_options LIKE '%stats%'", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, opts string
		if err := rows.Scan(&name, &opts); err != nil {
			t.Fatal(err)
		}
		t.Errorf("table %s kept the load's options: %s", name, opts)
	}
	rows.Close()
	stats := map[string]int64{}
	rows, err = conn.Query("SELECT table_name, n_rows FROM mysql.innodb_table_stats WHERE database_name = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		stats[name] = n
	}
	rows.Close()
	if len(stats) == 0 {
		t.Fatalf("no persistent statistics for database %s", db)
	}
	stale := 0
	for _, tb := range md.Tables {
		if n, ok := stats[tb.Name]; ok && n != tb.Rows {
			if stale++; stale <= 5 {
				t.Errorf("statistics of %s say %d rows, the table has %d", tb.Name, n, tb.Rows)
			}
		}
	}
}
