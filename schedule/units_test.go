package schedule

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func goldenOptions() UnitOptions {
	return UnitOptions{
		Binary:              "/usr/local/bin/shopvault",
		ConfigPath:          "/etc/shopvault/shopvault.toml",
		BackupCalendar:      "*-*-* 03:00",
		CheckCalendar:       "Sun *-*-* 05:00",
		DrillCalendar:       "*-*-01 06:00:00",
		RandomizedDelay:     15 * time.Minute,
		CacheDir:            "/var/cache/shopvault",
		StateDir:            "/var/lib/shopvault",
		ReadWritePaths:      []string{"/var/lib/prometheus/node-exporter"},
		DrillReadWritePaths: []string{"/var/www/vhosts/staging.shop.example.com"},
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestUnitsGolden(t *testing.T) {
	units, err := Units(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range units {
		names = append(names, u.Name)
		golden(t, filepath.Join("units", u.Name), []byte(u.Content))
	}
	if want := AllUnitNames(); !reflect.DeepEqual(names, want) {
		t.Errorf("units %v, want %v", names, want)
	}
}

// TestUnitsRequiredSettings checks the settings the issue asks for,
// independently of the golden files.
func TestUnitsRequiredSettings(t *testing.T) {
	units, err := Units(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, u := range units {
		byName[u.Name] = u.Content
	}
	for _, svc := range []string{BackupService, CheckService, DrillService} {
		for _, line := range []string{"Nice=19", "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch", "ProtectSystem=strict",
			"PrivateTmp=true", "NoNewPrivileges=true", "ProtectHome=read-only", "OnFailure=shopvault-failure@%n.service",
			"StateDirectory=shopvault", "CacheDirectory=shopvault", "ReadWritePaths=/var/lib/prometheus/node-exporter"} {
			if !hasLine(byName[svc], line) && !strings.Contains(byName[svc], "\n"+line+" ") {
				t.Errorf("%s lacks %q", svc, line)
			}
		}
	}
	if !hasLine(byName[BackupService], "ExecStart=/usr/local/bin/shopvault --config /etc/shopvault/shopvault.toml run") {
		t.Errorf("backup service does not run `shopvault run`:\n%s", byName[BackupService])
	}
	if !strings.Contains(byName[DrillService], "/var/www/vhosts/staging.shop.example.com") ||
		strings.Contains(byName[BackupService], "staging") {
		t.Error("drill-only writable paths leak into the backup or miss the drill")
	}
	for timer, cal := range map[string]string{BackupTimer: "*-*-* 03:00", CheckTimer: "Sun *-*-* 05:00", DrillTimer: "*-*-01 06:00:00"} {
		for _, line := range []string{"OnCalendar=" + cal, "Persistent=true", "RandomizedDelaySec=900", "WantedBy=timers.target"} {
			if !hasLine(byName[timer], line) {
				t.Errorf("%s lacks %q", timer, line)
			}
		}
	}
}

func hasLine(content, line string) bool {
	for _, l := range strings.Split(content, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestUnitsOptions(t *testing.T) {
	o := goldenOptions()
	o.CheckCalendar, o.DrillCalendar = Off, Off
	o.StateDir, o.ConfigPath = "/srv/shop vault/state", "/etc/shop vault/100%.toml"
	units, err := Units(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 3 {
		t.Errorf("with check and drill off got %d units", len(units))
	}
	svc := units[0].Content
	if !hasLine(svc, `ExecStart=/usr/local/bin/shopvault --config "/etc/shop vault/100%%.toml" run`) {
		t.Errorf("config path not quoted:\n%s", svc)
	}
	if !strings.Contains(svc, `ReadWritePaths="/srv/shop vault/state" /var/lib/prometheus/node-exporter`) {
		t.Errorf("state dir outside /var/lib not in ReadWritePaths:\n%s", svc)
	}
	for _, bad := range []func(*UnitOptions){
		func(o *UnitOptions) { o.Binary = "shopvault" },
		func(o *UnitOptions) { o.ConfigPath = "" },
		func(o *UnitOptions) { o.BackupCalendar = Off },
		func(o *UnitOptions) { o.CheckCalendar = "daily\nExecStart=/bin/evil" },
		func(o *UnitOptions) { o.ReadWritePaths = []string{"relative"} },
	} {
		o := goldenOptions()
		bad(&o)
		if _, err := Units(o); err == nil {
			t.Errorf("Units accepted %+v", o)
		}
	}
}

// TestUnitsVerify runs systemd-analyze verify on the generated units (the
// Debian package "systemd" provides it).
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found; install the Debian package systemd")
		}
		t.Skip("systemd-analyze not found; install the Debian package systemd to run this test")
	}
	dir := t.TempDir()
	// ExecStart must name an existing executable for verify to pass.
	bin := filepath.Join(dir, "shopvault")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := goldenOptions()
	o.Binary = bin
	units, err := Units(o)
	if err != nil {
		t.Fatal(err)
	}
	unitDir := filepath.Join(dir, "units")
	if err := Install(t.Context(), units, unitDir, false, &bytes.Buffer{}, nil); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", "--man=no"}
	for _, u := range units {
		if !strings.Contains(u.Name, "@") {
			args = append(args, filepath.Join(unitDir, u.Name))
		}
	}
	// The template is verified through an instance name.
	inst := filepath.Join(unitDir, "shopvault-failure@shopvault-backup.service.service")
	if err := os.Symlink(FailureService, inst); err != nil {
		t.Fatal(err)
	}
	args = append(args, inst)
	cmd := exec.CommandContext(t.Context(), analyze, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir+":")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 on settings it ignores ("Failed to parse nice
	// priority"), so any output is a failure.
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify complained:\n%s", out)
	}
}

type call struct {
	name string
	args []string
}

func recorder(calls *[]call, fail string) Runner {
	return func(_ context.Context, name string, args ...string) error {
		*calls = append(*calls, call{name, args})
		if fail != "" && len(args) > 0 && args[0] == fail {
			return errors.New("exit status 1")
		}
		return nil
	}
}

func TestInstall(t *testing.T) {
	units, err := Units(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("output dir: write only", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		var calls []call
		var log bytes.Buffer
		if err := Install(t.Context(), units, dir, false, &log, recorder(&calls, "")); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 0 {
			t.Errorf("systemctl called for a non-system dir: %v", calls)
		}
		for _, u := range units {
			got, err := os.ReadFile(filepath.Join(dir, u.Name))
			if err != nil || string(got) != u.Content {
				t.Errorf("%s not written: %v", u.Name, err)
			}
		}
		var rm []call
		if err := Uninstall(t.Context(), dir, false, &log, recorder(&rm, "")); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 || len(rm) != 0 {
			t.Errorf("after uninstall: files %v, calls %v", left, rm)
		}
	})
	t.Run("dry run writes nothing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		var calls []call
		var out bytes.Buffer
		if err := Install(t.Context(), units, dir, true, &out, recorder(&calls, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) || len(calls) != 0 {
			t.Errorf("dry run touched %s (%v) or ran %v", dir, err, calls)
		}
		if !strings.Contains(out.String(), "OnCalendar=*-*-* 03:00") || !strings.Contains(out.String(), "# "+filepath.Join(dir, BackupTimer)) {
			t.Errorf("dry run output lacks the units:\n%s", out.String())
		}
	})
	t.Run("system dir enables timers", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("writing to /etc/systemd/system needs root")
		}
		// Only the dry run touches the real system directory.
		var calls []call
		var out bytes.Buffer
		if err := Install(t.Context(), units, SystemDir, true, &out, recorder(&calls, "")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "would run: systemctl enable --now shopvault-backup.timer shopvault-check.timer shopvault-drill.timer") {
			t.Errorf("dry run for the system dir:\n%s", out.String())
		}
	})
}
