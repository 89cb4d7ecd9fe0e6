package mariadbtest_test

import (
	"strings"
	"testing"

	"github.com/shopvault/shopvault/integration/mariadbtest"
)

func TestStartExecLoad(t *testing.T) {
	s := mariadbtest.Start(t)
	if !strings.Contains(s.Version, "MariaDB") {
		t.Errorf("version %q does not look like MariaDB", s.Version)
	}
	s.Exec(t, "", "CREATE DATABASE h", "CREATE TABLE h.t (id INT PRIMARY KEY, v VARCHAR(10))", "INSERT INTO h.t VALUES (1,'a'),(2,'b')")
	var n int
	if err := s.DB(t, "h").QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2", n, err)
	}
	// Over TCP as well.
	cfg := s.TCPConfig("h")
	if !strings.HasPrefix(cfg.Addr, "127.0.0.1:") {
		t.Errorf("tcp addr %q", cfg.Addr)
	}
}

func TestLoadPrestaShop(t *testing.T) {
	s := mariadbtest.Start(t)
	s.LoadPrestaShop(t, "ps")
	var tables, orders int
	db := s.DB(t, "ps")
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='ps'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM ps_orders").Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if tables != 229 || orders != 3 {
		t.Fatalf("tables=%d orders=%d, want 229 and 3 (see shared/testdata/prestashop/README.md)", tables, orders)
	}
}

func TestRestart(t *testing.T) {
	s := mariadbtest.Start(t)
	s.Exec(t, "", "CREATE DATABASE r", "CREATE TABLE r.t (id INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO r.t VALUES (7)")
	s.Restart(t)
	var id int
	if err := s.DB(t, "r").QueryRow("SELECT id FROM t").Scan(&id); err != nil || id != 7 {
		t.Fatalf("after restart: id=%d err=%v", id, err)
	}
}
