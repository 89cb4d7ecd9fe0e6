package recovery_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopvault/shopvault/backend/mem"
	"github.com/shopvault/shopvault/backup"
	"github.com/shopvault/shopvault/recovery"
	"github.com/shopvault/shopvault/repo"
)

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture backs up a tree with a PrestaShop-looking shop and another
// directory into an in-memory repository.
func fixture(t *testing.T) (*repo.Repository, *repo.Snapshot, string) {
	t.Helper()
	ctx := t.Context()
	src := t.TempDir()
	files := map[string]string{
		"www/shop/index.php":                 "<?php // front\n",
		"www/shop/app/config/parameters.php": "<?php return array('parameters' => array('database_host' => 'localhost', 'database_port' => '', 'database_name' => 'shop', 'database_user' => 'shop', 'database_password' => 'pw', 'database_prefix' => 'ps_', 'cookie_key' => 'k'));\n",
		"www/shop/img/p/1.jpg":               strings.Repeat("jpeg", 5000),
		"www/other/readme.txt":               "not a shop\n",
	}
	for p, c := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	be := mem.New()
	_, key, err := repo.Init(ctx, be, repo.InitOptions{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, key)
	if err != nil {
		t.Fatal(err)
	}
	r.TempDir = t.TempDir()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, r, backup.Options{Paths: []string{src}, Hostname: "shop", Now: func() time.Time { return fixedNow.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	sn, err := r.FindSnapshot(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return r, sn, src
}

func TestFindShop(t *testing.T) {
	r, sn, src := fixture(t)
	got, err := recovery.FindShop(t.Context(), r, sn)
	if err != nil || got != filepath.Join(src, "www", "shop") {
		t.Fatalf("FindShop = %q, %v", got, err)
	}
}

func TestDrillFilesOnly(t *testing.T) {
	r, sn, src := fixture(t)
	scratch := t.TempDir()
	rep, err := recovery.Drill(t.Context(), r, sn, recovery.DrillOptions{Scratch: scratch, Hostname: "dr", Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Files == nil || rep.Files.Verified != 4 {
		t.Fatalf("drill: ok %v files %+v checklist %+v", rep.OK(), rep.Files, rep.Checklist)
	}
	if rep.RPOSeconds != 3600 {
		t.Errorf("RPO %v, want 3600 (snapshot an hour old)", rep.RPOSeconds)
	}
	// No database in the snapshot: the rewrite of the files is rehearsed.
	if rep.Source != filepath.Join(src, "www", "shop") {
		t.Errorf("source %q", rep.Source)
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Errorf("scratch left behind: %v", entries)
	}
	vs, err := r.Verifications(t.Context())
	if err != nil || vs[sn.ID].Hostname != "dr" || vs[sn.ID].Files != 4 {
		t.Errorf("verification not recorded: %+v %v", vs, err)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
}

func TestFullRefusesNonEmpty(t *testing.T) {
	r, sn, src := fixture(t)
	root := t.TempDir()
	rep, err := recovery.RestoreFull(t.Context(), r, sn, recovery.FullOptions{Root: root, Now: func() time.Time { return fixedNow }})
	if err != nil || !rep.OK() {
		t.Fatalf("full restore: %v %+v", err, rep)
	}
	data, err := os.ReadFile(filepath.Join(root, src, "www", "shop", "index.php"))
	if err != nil || string(data) != "<?php // front\n" {
		t.Fatalf("restored file: %q %v", data, err)
	}
	_, err = recovery.RestoreFull(t.Context(), r, sn, recovery.FullOptions{Root: root})
	if !errors.Is(err, recovery.ErrNotEmpty) || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("second full restore: %v", err)
	}
	// verify --to full notices a changed file.
	if err := os.WriteFile(filepath.Join(root, src, "www", "other", "readme.txt"), []byte("changed!!!!"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = recovery.VerifyTarget(t.Context(), r, sn, recovery.VerifyOptions{Kind: recovery.KindFull, Root: root})
	if !errors.Is(err, recovery.ErrFailed) || rep.OK() || !strings.Contains(rep.Failed()[0].Detail, "readme.txt") {
		t.Fatalf("verify after a change: %v %+v", err, rep.Failed())
	}
}

func TestStagingNeedsDatabaseServer(t *testing.T) {
	r, sn, _ := fixture(t)
	sn.DB = &repo.DBInfo{Databases: []string{"prestashop"}}
	_, err := recovery.RestoreStaging(t.Context(), r, sn, recovery.StagingOptions{Root: t.TempDir()})
	if !errors.Is(err, recovery.ErrNoDatabase) {
		t.Fatalf("staging without a server for a snapshot with databases: %v", err)
	}
}
