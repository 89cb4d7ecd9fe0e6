package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopvault/shopvault/dump"
	"github.com/shopvault/shopvault/integration/mariadbtest"
)

const (
	dumpAccounts       = 200
	dumpInitialBalance = 1000
)

// dumpShopSchema creates a bank (money moves between accounts, the sum is invariant) and
// orders with lines (an order row says how many lines it has), each written in one
// transaction, with enough rows that a dump takes a while.
func dumpShopSchema(t *testing.T, s *mariadbtest.Server) {
	s.Exec(t, "", "CREATE DATABASE shop")
	s.Exec(t, "shop",
		"CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
		"CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, n_lines INT NOT NULL, note VARCHAR(200)) ENGINE=InnoDB",
		"CREATE TABLE order_lines (order_id INT NOT NULL, line_no INT NOT NULL, qty INT, pad VARCHAR(200), PRIMARY KEY (order_id, line_no)) ENGINE=InnoDB",
		"CREATE TABLE zz_log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100)) ENGINE=InnoDB",
	)
	var vals []string
	for i := 1; i <= dumpAccounts; i++ {
		vals = append(vals, fmt.Sprintf("(%d,%d)", i, dumpInitialBalance))
	}
	s.Exec(t, "shop", "INSERT INTO accounts VALUES "+strings.Join(vals, ","))
	// 3000 orders with 1..5 lines.
	s.Exec(t, "shop",
		"INSERT INTO orders (n_lines, note) SELECT 1 + seq % 5, REPEAT('o', 150) FROM seq_1_to_3000",
		"INSERT INTO order_lines SELECT o.id, l.seq, 1, REPEAT('l', 150) FROM orders o JOIN seq_1_to_5 l ON l.seq <= o.n_lines",
	)
}

// dumpWriters runs writers until stop is closed: transfers, new orders with lines, and
// order deletions, each in one transaction. It returns how many transactions committed.
func dumpWriters(t *testing.T, s *mariadbtest.Server, stop <-chan struct{}) (wait func() int64) {
	db := s.DB(t, "shop")
	db.SetMaxOpenConns(8)
	var n atomic.Int64
	var wg sync.WaitGroup
	worker := func(seed uint64, fn func(ctx context.Context, tx *sql.Tx, r *rand.Rand) error) {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 1))
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx := context.Background()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			if err := fn(ctx, tx, r); err != nil {
				tx.Rollback()
				if isRetryable(err) {
					continue
				}
				t.Errorf("writer: %v", err)
				return
			}
			if err := tx.Commit(); err != nil {
				if isRetryable(err) {
					continue
				}
				t.Errorf("writer commit: %v", err)
				return
			}
			n.Add(1)
		}
	}
	transfer := func(ctx context.Context, tx *sql.Tx, r *rand.Rand) error {
		a, b := 1+r.IntN(dumpAccounts), 1+r.IntN(dumpAccounts)
		amt := 1 + r.IntN(50)
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amt, a); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amt, b)
		return err
	}
	order := func(ctx context.Context, tx *sql.Tx, r *rand.Rand) error {
		lines := 1 + r.IntN(6)
		res, err := tx.ExecContext(ctx, "INSERT INTO orders (n_lines, note) VALUES (?, 'new')", lines)
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		for l := 1; l <= lines; l++ {
			if _, err := tx.ExecContext(ctx, "INSERT INTO order_lines VALUES (?, ?, 1, 'x')", id, l); err != nil {
				return err
			}
		}
		if r.IntN(4) == 0 { // and cancel an old order, lines first
			old := 1 + r.IntN(3000)
			if _, err := tx.ExecContext(ctx, "DELETE FROM order_lines WHERE order_id = ?", old); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM orders WHERE id = ?", old); err != nil {
				return err
			}
		}
		return nil
	}
	wg.Add(4)
	go worker(1, transfer)
	go worker(2, transfer)
	go worker(3, order)
	go worker(4, order)
	return func() int64 { wg.Wait(); return n.Load() }
}

func isRetryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Deadlock") || strings.Contains(s, "Lock wait timeout")
}

// checkShopInvariants checks the restored copy: the money sum and every order's lines.
func checkShopInvariants(t *testing.T, db *sql.DB, schema string) {
	t.Helper()
	var sum, n int64
	if err := db.QueryRow("SELECT SUM(balance), COUNT(*) FROM "+schema+".accounts").Scan(&sum, &n); err != nil {
		t.Fatal(err)
	}
	if n != dumpAccounts || sum != dumpAccounts*dumpInitialBalance {
		t.Errorf("%s: %d accounts holding %d, want %d holding %d: the snapshot is not consistent", schema, n, sum, dumpAccounts, dumpAccounts*dumpInitialBalance)
	}
	var bad int
	q := "SELECT COUNT(*) FROM " + schema + ".orders o LEFT JOIN (SELECT order_id, COUNT(*) c FROM " + schema +
		".order_lines GROUP BY order_id) l ON l.order_id = o.id WHERE IFNULL(l.c, 0) <> o.n_lines"
	if err := db.QueryRow(q).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	var orphans int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + schema + ".order_lines l LEFT JOIN " + schema + ".orders o ON o.id = l.order_id WHERE o.id IS NULL").Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if bad != 0 || orphans != 0 {
		t.Errorf("%s: %d orders with incomplete lines, %d orphan lines: the snapshot is not consistent", schema, bad, orphans)
	}
}

func TestDumpConsistentUnderWrites(t *testing.T) {
	s := mariadbtest.Start(t)
	dumpShopSchema(t, s)
	for _, threads := range []int{1, 4} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			stop := make(chan struct{})
			wait := dumpWriters(t, s, stop)
			time.Sleep(200 * time.Millisecond) // writers running
			store := newDumpMemStore()
			// Small statements make the dump slower, so more commits land while it runs.
			m, err := dump.Dump(t.Context(), s.RootConfig("shop"), dump.Options{Threads: threads, MaxStatementBytes: 8192}, store)
			time.Sleep(100 * time.Millisecond)
			close(stop)
			commits := wait()
			if err != nil {
				t.Fatalf("dump: %v", err)
			}
			if commits < 10 {
				t.Fatalf("only %d writer transactions committed; the test proves nothing", commits)
			}
			if m.Method != dump.MethodBackupStage || m.Threads != threads {
				t.Errorf("method %s threads %d (%s)", m.Method, m.Threads, m.FallbackReason)
			}
			checkShopInvariants(t, s.DB(t, ""), "shop") // the live data itself is consistent
			into := fmt.Sprintf("shop_t%d", threads)
			if _, err := dump.Load(t.Context(), s.RootConfig(into), m, "shop", store, dump.LoadOptions{Threads: threads}); err != nil {
				t.Fatalf("load: %v", err)
			}
			checkShopInvariants(t, s.DB(t, ""), into)
			t.Logf("%d writer transactions committed during the run", commits)
		})
	}
}

// dumpHook is a dump.Progress that runs a function when a table starts.
type dumpHook struct {
	mu      sync.Mutex
	onStart map[string]func()
}

func (h *dumpHook) TableStarted(database, table string) {
	h.mu.Lock()
	f := h.onStart[table]
	delete(h.onStart, table)
	h.mu.Unlock()
	if f != nil {
		f()
	}
}

func (h *dumpHook) TableDone(database, table string, rows, bytes int64) {}

func TestDumpDDLDuringDump(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE ddl")
	reset := func(t *testing.T) {
		s.Exec(t, "ddl", "DROP TABLE IF EXISTS a, b, c, c2")
		for _, n := range []string{"a", "b", "c"} {
			s.Exec(t, "ddl", "CREATE TABLE "+n+" (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
				"INSERT INTO "+n+" SELECT seq, seq FROM seq_1_to_100")
		}
	}
	// With one thread, tables of equal size are dumped in name order: a, b, c. When a starts,
	// the DDL hits c, which is still to be dumped.
	cases := []struct {
		name, ddl string
	}{
		{"instant add column", "ALTER TABLE c ADD COLUMN x INT DEFAULT 5, ALGORITHM=INSTANT"},
		{"instant drop column", "ALTER TABLE c DROP COLUMN v, ALGORITHM=INSTANT"},
		{"copy alter", "ALTER TABLE c MODIFY v BIGINT, ALGORITHM=COPY"},
		{"add index", "ALTER TABLE c ADD INDEX (v)"},
		{"truncate", "TRUNCATE TABLE c"},
		{"drop", "DROP TABLE c"},
		{"rename", "RENAME TABLE c TO c2"},
		{"insert", "INSERT INTO c VALUES (1000, 1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reset(t)
			want, _, err := dump.TableDigest(t.Context(), s.DB(t, ""), dump.DigestAlgorithm, "ddl", "c", []string{"id", "v"})
			if err != nil {
				t.Fatal(err)
			}
			hook := &dumpHook{onStart: map[string]func(){"a": func() { s.Exec(t, "ddl", "SET lock_wait_timeout = 5", tc.ddl) }}}
			store := newDumpMemStore()
			m, err := dump.Dump(t.Context(), s.RootConfig("ddl"), dump.Options{Threads: 1, Progress: hook}, store)
			if err == nil {
				// Only acceptable if c is exactly as it was at the consistency point.
				md := m.Database("ddl")
				for _, tb := range md.Tables {
					if tb.Name == "c" && tb.Rows != want {
						t.Fatalf("DDL %q: dump succeeded with %d rows of c, want %d", tc.ddl, tb.Rows, want)
					}
				}
				if !strings.HasPrefix(tc.ddl, "INSERT") && !strings.Contains(tc.ddl, "ADD INDEX") {
					t.Fatalf("DDL %q during the dump: no error", tc.ddl)
				}
				return
			}
			var sc *dump.SchemaChangedError
			if !errors.As(err, &sc) || sc.Table != "c" || !errors.Is(err, dump.ErrSchemaChanged) {
				t.Fatalf("DDL %q: err = %v, want a SchemaChangedError naming table c", tc.ddl, err)
			}
			if m != nil {
				t.Errorf("manifest returned with an error")
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}

	// A table locked by another session (as by a long ALTER) is waited for only TableLockTimeout.
	t.Run("locked table", func(t *testing.T) {
		reset(t)
		conn, err := s.DB(t, "ddl").Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(t.Context(), "LOCK TABLES c WRITE"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = dump.Dump(t.Context(), s.RootConfig("ddl"), dump.Options{Threads: 1, LockTimeout: time.Second, TableLockTimeout: time.Second}, newDumpMemStore())
		if err == nil || !strings.Contains(err.Error(), "`c`") {
			t.Fatalf("dump of a locked table: err = %v, want an error naming c", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("waited %s for a locked table", d)
		}
		t.Logf("locked: %v", err)
		conn.ExecContext(t.Context(), "UNLOCK TABLES")
	})

	// DDL on a table already dumped neither blocks (no metadata lock is kept) nor fails.
	t.Run("alter dumped table", func(t *testing.T) {
		reset(t)
		hook := &dumpHook{onStart: map[string]func(){"c": func() {
			s.Exec(t, "ddl", "SET lock_wait_timeout = 3", "ALTER TABLE a ADD COLUMN y INT, ALGORITHM=COPY")
		}}}
		if _, err := dump.Dump(t.Context(), s.RootConfig("ddl"), dump.Options{Threads: 1, Progress: hook}, newDumpMemStore()); err != nil {
			t.Fatalf("dump with DDL on an already dumped table: %v", err)
		}
	})
}

func TestDumpBadInput(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE shop", "CREATE USER shop@localhost IDENTIFIED BY 'right-password'", "GRANT ALL ON shop.* TO shop@localhost")
	s.Exec(t, "shop", "CREATE TABLE t (id INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB",
		"INSERT INTO t SELECT seq, REPEAT('p', 1000) FROM seq_1_to_20000",
		"CREATE TABLE m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM", "INSERT INTO m VALUES (1, 1)")
	ctx := t.Context()

	t.Run("wrong password", func(t *testing.T) {
		cfg := s.RootConfig("shop")
		cfg.User, cfg.Passwd = "shop", "wrong"
		_, err := dump.Dump(ctx, cfg, dump.Options{}, newDumpMemStore())
		if err == nil || !strings.Contains(err.Error(), "access denied") || !strings.Contains(err.Error(), "option") {
			t.Fatalf("err = %v, want access denied with a hint about the option file", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		cfg := s.RootConfig("shop")
		cfg.Addr = t.TempDir() + "/nothing.sock"
		_, err := dump.Dump(ctx, cfg, dump.Options{}, newDumpMemStore())
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v, want server unreachable", err)
		}
		cfg = s.TCPConfig("shop")
		cfg.Addr = "127.0.0.1:1"
		_, err = dump.Dump(ctx, cfg, dump.Options{}, newDumpMemStore())
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("tcp: err = %v, want server unreachable", err)
		}
	})
	t.Run("missing database", func(t *testing.T) {
		_, err := dump.Dump(ctx, s.RootConfig(""), dump.Options{Databases: []string{"shop", "no_such_db"}}, newDumpMemStore())
		if !errors.Is(err, dump.ErrDatabaseNotFound) || !strings.Contains(err.Error(), "no_such_db") {
			t.Fatalf("err = %v, want ErrDatabaseNotFound naming no_such_db", err)
		}
	})
	t.Run("connection killed mid-dump", func(t *testing.T) {
		killer := s.DB(t, "")
		killer.SetMaxOpenConns(1)
		sink := &funcSink{fn: func(ctx context.Context, database, name string, r io.Reader) error {
			if name != "tables/t.sql" {
				return drain(r)
			}
			buf := make([]byte, 4096)
			if _, err := io.ReadFull(r, buf); err != nil {
				return err
			}
			ids, err := otherConnections(killer)
			if err != nil {
				return err
			}
			for _, id := range ids {
				killer.Exec(fmt.Sprintf("KILL CONNECTION %d", id))
			}
			return drain(r)
		}}
		m, err := dump.Dump(ctx, s.RootConfig("shop"), dump.Options{Threads: 1}, sink)
		if err == nil || m != nil {
			t.Fatalf("dump with its connections killed: err = %v, manifest %v; want an error and no manifest", err, m != nil)
		}
		if !strings.Contains(err.Error(), "`t`") {
			t.Errorf("error does not name the table: %v", err)
		}
		t.Logf("killed: %v", err)
	})
	for _, method := range []dump.Method{dump.MethodAuto, dump.MethodFTWRL} {
		t.Run("lock blocked by a long write, "+string(method), func(t *testing.T) {
			// A long statement writing a MyISAM table blocks BACKUP STAGE BLOCK_DDL and FTWRL.
			done := make(chan error, 1)
			go func() {
				_, err := s.DB(t, "shop").Exec("UPDATE m SET v = v + SLEEP(4)")
				done <- err
			}()
			time.Sleep(300 * time.Millisecond)
			store := newDumpMemStore()
			m, err := dump.Dump(ctx, s.RootConfig("shop"), dump.Options{Threads: 2, Method: method, LockTimeout: time.Second}, store)
			if err != nil {
				t.Fatalf("dump: %v", err)
			}
			if m.Method != dump.MethodSingle || m.Threads != 1 || !strings.Contains(m.FallbackReason, "not granted") {
				t.Fatalf("method %q threads %d reason %q: want the single-connection fallback, explained", m.Method, m.Threads, m.FallbackReason)
			}
			if m.Binlog == nil || m.Binlog.File == "" {
				t.Errorf("fallback lost the binlog position: %+v", m.Binlog)
			}
			if err := <-done; err != nil {
				t.Errorf("long write: %v", err)
			}
			t.Logf("fallback: %s", m.FallbackReason)
			if _, err := dump.Load(ctx, s.RootConfig("copy_"+strings.ReplaceAll(string(method)+"x", "-", "_")), m, "shop", store, dump.LoadOptions{}); err != nil {
				t.Fatalf("load of fallback dump: %v", err)
			}
		})
	}
	t.Run("non-transactional tables", func(t *testing.T) {
		for _, lock := range []bool{false, true} {
			m, err := dump.Dump(ctx, s.RootConfig("shop"), dump.Options{Threads: 2, LockNonTransactional: lock}, newDumpMemStore())
			if err != nil {
				t.Fatal(err)
			}
			for _, tb := range m.Database("shop").Tables {
				if tb.Name == "m" && (tb.Transactional || tb.Consistent != lock) {
					t.Errorf("lock=%v: MyISAM table reported %+v", lock, tb)
				}
			}
		}
		// The lock is released: a write goes through at once.
		s.Exec(t, "shop", "SET lock_wait_timeout = 2", "UPDATE m SET v = v + 1")
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sink := &funcSink{fn: func(ctx context.Context, database, name string, r io.Reader) error {
			if name == "tables/t.sql" {
				io.CopyN(io.Discard, r, 1000)
				cancel()
			}
			return drain(r)
		}}
		start := time.Now()
		m, err := dump.Dump(cctx, s.RootConfig("shop"), dump.Options{Threads: 2}, sink)
		if !errors.Is(err, context.Canceled) || m != nil {
			t.Fatalf("cancelled dump: err = %v, manifest %v", err, m != nil)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("cancelled dump took %s to return", d)
		}
	})
	t.Run("sink error", func(t *testing.T) {
		boom := errors.New("disk full")
		sink := &funcSink{fn: func(ctx context.Context, database, name string, r io.Reader) error {
			if name == "tables/t.sql" {
				io.CopyN(io.Discard, r, 1000)
				return boom
			}
			return drain(r)
		}}
		_, err := dump.Dump(ctx, s.RootConfig("shop"), dump.Options{Threads: 2}, sink)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "tables/t.sql") {
			t.Fatalf("err = %v, want the sink's error naming the stream", err)
		}
	})
}

type funcSink struct {
	fn func(ctx context.Context, database, name string, r io.Reader) error
}

func (f *funcSink) WriteStream(ctx context.Context, database, name string, r io.Reader) error {
	return f.fn(ctx, database, name, r)
}

func drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func otherConnections(db *sql.DB) ([]int64, error) {
	rows, err := db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump') AND USER = 'root'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
