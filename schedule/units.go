package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// SystemDir is where Install writes units by default; only there does it
// also reload systemd and enable the timers.
const SystemDir = "/etc/systemd/system"

// Unit names written by Units.
const (
	BackupService  = "shopvault-backup.service"
	BackupTimer    = "shopvault-backup.timer"
	CheckService   = "shopvault-check.service"
	CheckTimer     = "shopvault-check.timer"
	DrillService   = "shopvault-drill.service"
	DrillTimer     = "shopvault-drill.timer"
	FailureService = "shopvault-failure@.service"
)

// AllUnitNames lists every unit Units may write, for Uninstall.
var allUnitNames = []string{BackupService, BackupTimer, CheckService, CheckTimer, DrillService, DrillTimer, FailureService}

// AllUnitNames returns the names of every unit Units may write.
func AllUnitNames() []string { return slices.Clone(allUnitNames) }

// Off disables the check or drill timer when given as its calendar.
const Off = "off"

// UnitOptions configures the generated units.
type UnitOptions struct {
	// Binary is the absolute path of the shopvault executable.
	Binary string
	// ConfigPath is passed as --config.
	ConfigPath string
	// BackupCalendar, CheckCalendar and DrillCalendar are systemd
	// OnCalendar expressions; Check and Drill may be Off.
	BackupCalendar, CheckCalendar, DrillCalendar string
	// RandomizedDelay is the timers' RandomizedDelaySec.
	RandomizedDelay time.Duration
	// CacheDir and StateDir must be writable by the services. Under
	// /var/cache and /var/lib they become CacheDirectory= and
	// StateDirectory= (systemd creates them); elsewhere ReadWritePaths=.
	CacheDir, StateDir string
	// ReadWritePaths are more writable paths: the Prometheus textfile
	// directory for all services, and for the drill its restore roots.
	ReadWritePaths []string
	// DrillReadWritePaths are writable only for the drill (restore
	// target roots, scratch directories).
	DrillReadWritePaths []string
	// TimeoutBackup bounds a nightly run so a hung one fails loudly;
	// default 12h.
	TimeoutBackup time.Duration
}

// Unit is one systemd unit file.
type Unit struct {
	Name    string
	Content string
}

// Units generates the service and timer units: a nightly backup
// (`shopvault run`), a weekly `check` and a monthly `drill`, each with
// Persistent=true timers, low CPU and I/O priority and systemd sandboxing,
// and a failure template that `OnFailure=` starts (`shopvault notify
// failure --unit NAME`).
func Units(o UnitOptions) ([]Unit, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.TimeoutBackup <= 0 {
		o.TimeoutBackup = 12 * time.Hour
	}
	units := []Unit{
		{BackupService, o.service("shopvault nightly backup (hooks, backup, forget, prune)", []string{"run"}, o.TimeoutBackup, nil)},
		{BackupTimer, o.timer("Nightly shopvault backup", o.BackupCalendar)},
	}
	if o.CheckCalendar != Off {
		units = append(units,
			Unit{CheckService, o.service("shopvault repository check", []string{"check"}, 24*time.Hour, nil)},
			Unit{CheckTimer, o.timer("Weekly shopvault repository check", o.CheckCalendar)})
	}
	if o.DrillCalendar != Off {
		units = append(units,
			Unit{DrillService, o.service("shopvault disaster-recovery drill", []string{"drill"}, 24*time.Hour, o.DrillReadWritePaths)},
			Unit{DrillTimer, o.timer("Monthly shopvault disaster-recovery drill", o.DrillCalendar)})
	}
	units = append(units, Unit{FailureService, o.failure()})
	return units, nil
}

func (o UnitOptions) check() error {
	if !path.IsAbs(o.Binary) {
		return fmt.Errorf("unit options: binary %q is not an absolute path", o.Binary)
	}
	if !path.IsAbs(o.ConfigPath) {
		return fmt.Errorf("unit options: config path %q is not an absolute path", o.ConfigPath)
	}
	for _, c := range []struct{ name, v string }{{"backup", o.BackupCalendar}, {"check", o.CheckCalendar}, {"drill", o.DrillCalendar}} {
		if c.v == "" || strings.ContainsAny(c.v, "\n\r\x00") || (c.v == Off && c.name == "backup") {
			return fmt.Errorf("unit options: invalid %s calendar %q", c.name, c.v)
		}
	}
	if o.RandomizedDelay < 0 {
		return fmt.Errorf("unit options: negative randomized delay")
	}
	for _, p := range append(append([]string{o.CacheDir, o.StateDir}, o.ReadWritePaths...), o.DrillReadWritePaths...) {
		if !path.IsAbs(p) || strings.ContainsAny(p, "\n\r\x00") {
			return fmt.Errorf("unit options: writable path %q is not an absolute path", p)
		}
	}
	return nil
}

// execLine quotes argv for ExecStart= (systemd.service(5) "Command lines").
func execLine(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		a = strings.ReplaceAll(a, "%", "%%")
		a = strings.ReplaceAll(a, "$", "$$")
		if a == "" || strings.ContainsAny(a, " \t\"'\\;") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// pathValue escapes a path for ReadWritePaths= and similar settings.
func pathValue(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if strings.ContainsAny(p, " \t\"\\") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
	}
	return p
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%d", int64(d.Round(time.Second)/time.Second))
}

func (o UnitOptions) service(desc string, args []string, timeout time.Duration, extraRW []string) string {
	var b strings.Builder
	argv := append([]string{o.Binary, "--config", o.ConfigPath}, args...)
	fmt.Fprintf(&b, "# Generated by shopvault schedule install; changes are overwritten.\n")
	fmt.Fprintf(&b, "[Unit]\nDescription=%s\n", desc)
	b.WriteString("Wants=network-online.target\nAfter=network-online.target mariadb.service mysql.service\n")
	b.WriteString("OnFailure=shopvault-failure@%n.service\n\n")
	b.WriteString("[Service]\nType=oneshot\n")
	fmt.Fprintf(&b, "ExecStart=%s\n", execLine(argv))
	fmt.Fprintf(&b, "TimeoutStartSec=%s\n", seconds(timeout))
	b.WriteString("Nice=19\nIOSchedulingClass=idle\nCPUSchedulingPolicy=batch\n")
	// Sandboxing: everything read-only except what shopvault writes.
	b.WriteString("ProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=true\nNoNewPrivileges=true\n")
	b.WriteString("ProtectKernelTunables=true\nProtectKernelModules=true\nProtectControlGroups=true\n")
	b.WriteString("RestrictSUIDSGID=true\nLockPersonality=true\nRestrictRealtime=true\n")
	var rw []string
	// The cache holds file names: private. The state (last run summaries)
	// is read by monitoring (status --nagios as the nagios user): 0755.
	for _, d := range []struct{ dir, root, setting, mode string }{
		{o.CacheDir, "/var/cache/", "CacheDirectory", "0700"}, {o.StateDir, "/var/lib/", "StateDirectory", "0755"},
	} {
		if rel, ok := strings.CutPrefix(d.dir, d.root); ok && rel != "" {
			fmt.Fprintf(&b, "%s=%s\n", d.setting, pathValue(rel))
			fmt.Fprintf(&b, "%sMode=%s\n", d.setting, d.mode)
		} else {
			rw = append(rw, d.dir)
		}
	}
	rw = append(rw, o.ReadWritePaths...)
	rw = append(rw, extraRW...)
	if len(rw) > 0 {
		vals := make([]string, len(rw))
		for i, p := range rw {
			vals[i] = pathValue(p)
		}
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", strings.Join(vals, " "))
	}
	b.WriteString("UMask=0077\n")
	return b.String()
}

func (o UnitOptions) timer(desc, calendar string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by shopvault schedule install; changes are overwritten.\n")
	fmt.Fprintf(&b, "[Unit]\nDescription=%s\n\n", desc)
	fmt.Fprintf(&b, "[Timer]\nOnCalendar=%s\n", calendar)
	if o.RandomizedDelay > 0 {
		fmt.Fprintf(&b, "RandomizedDelaySec=%s\n", seconds(o.RandomizedDelay))
	}
	b.WriteString("Persistent=true\nAccuracySec=1min\n\n")
	b.WriteString("[Install]\nWantedBy=timers.target\n")
	return b.String()
}

func (o UnitOptions) failure() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by shopvault schedule install; changes are overwritten.\n")
	b.WriteString("[Unit]\nDescription=shopvault failure notification for %i\n\n")
	b.WriteString("[Service]\nType=oneshot\n")
	// %i is expanded by systemd; execLine would escape it.
	fmt.Fprintf(&b, "ExecStart=%s --unit %%i\n", execLine([]string{o.Binary, "--config", o.ConfigPath, "notify", "failure"}))
	b.WriteString("TimeoutStartSec=120\n")
	b.WriteString("ProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=true\nNoNewPrivileges=true\n")
	if rel, ok := strings.CutPrefix(o.StateDir, "/var/lib/"); ok && rel != "" {
		fmt.Fprintf(&b, "StateDirectory=%s\nStateDirectoryMode=0755\n", pathValue(rel))
	} else {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", pathValue(o.StateDir))
	}
	return b.String()
}

// Runner runs a command (systemctl) and returns its failure, including a
// non-zero exit status.
type Runner func(ctx context.Context, name string, args ...string) error

// Install writes units into dir (SystemDir when empty) atomically. When dir
// is SystemDir it then runs `systemctl daemon-reload` and `systemctl enable
// --now` for the timers; elsewhere (--output) it only writes. With dryRun it
// writes nothing and prints the units and commands to w instead. Progress
// lines go to w.
func Install(ctx context.Context, units []Unit, dir string, dryRun bool, w io.Writer, run Runner) error {
	if dir == "" {
		dir = SystemDir
	}
	system := filepath.Clean(dir) == SystemDir
	var timers []string
	for _, u := range units {
		if strings.HasSuffix(u.Name, ".timer") {
			timers = append(timers, u.Name)
		}
	}
	if dryRun {
		for _, u := range units {
			fmt.Fprintf(w, "# %s\n%s\n", filepath.Join(dir, u.Name), u.Content)
		}
		if system {
			fmt.Fprintf(w, "# would run: systemctl daemon-reload\n# would run: systemctl enable --now %s\n", strings.Join(timers, " "))
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install units: %w", err)
	}
	for _, u := range units {
		if strings.ContainsAny(u.Name, "/\x00") || u.Name == "" {
			return fmt.Errorf("install units: invalid unit name %q", u.Name)
		}
		p := filepath.Join(dir, u.Name)
		if err := writeFileAtomic(p, []byte(u.Content), 0o644); err != nil {
			return fmt.Errorf("install unit %s: %w", u.Name, err)
		}
		fmt.Fprintf(w, "wrote %s\n", p)
	}
	if !system {
		fmt.Fprintf(w, "units written to %s; not enabled (not %s)\n", dir, SystemDir)
		return nil
	}
	if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w", err)
	}
	if err := run(ctx, "systemctl", append([]string{"enable", "--now"}, timers...)...); err != nil {
		return fmt.Errorf("systemctl enable --now %s: %w", strings.Join(timers, " "), err)
	}
	fmt.Fprintf(w, "enabled %s\n", strings.Join(timers, ", "))
	return nil
}

// Uninstall stops and disables the timers (in SystemDir only) and removes
// every unit file of AllUnitNames from dir. Missing files are fine.
func Uninstall(ctx context.Context, dir string, dryRun bool, w io.Writer, run Runner) error {
	if dir == "" {
		dir = SystemDir
	}
	system := filepath.Clean(dir) == SystemDir
	var timers []string
	for _, n := range allUnitNames {
		if strings.HasSuffix(n, ".timer") {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				timers = append(timers, n)
			}
		}
	}
	if dryRun {
		if system && len(timers) > 0 {
			fmt.Fprintf(w, "# would run: systemctl disable --now %s\n", strings.Join(timers, " "))
		}
		for _, n := range allUnitNames {
			fmt.Fprintf(w, "# would remove %s\n", filepath.Join(dir, n))
		}
		return nil
	}
	if system && len(timers) > 0 {
		if err := run(ctx, "systemctl", append([]string{"disable", "--now"}, timers...)...); err != nil {
			return fmt.Errorf("systemctl disable --now: %w", err)
		}
	}
	for _, n := range allUnitNames {
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("remove unit: %w", err)
		}
		fmt.Fprintf(w, "removed %s\n", p)
	}
	if system {
		if err := run(ctx, "systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("systemctl daemon-reload: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
