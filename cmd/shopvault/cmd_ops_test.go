package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopvault/shopvault/config"
	"github.com/shopvault/shopvault/schedule"
)

// runOps runs the operations commands in an app shaped like main's.
func runOps(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	app := &cli.App{
		Name: "shopvault", Writer: &out, ErrWriter: &errb,
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", EnvVars: []string{"SHOPVAULT_CONFIG"}, Value: config.DefaultPath},
		},
		Commands: []*cli.Command{configCommand(), scheduleCommand(), statusCommand(), notifyCommand()},
	}
	err := app.RunContext(t.Context(), append([]string{"shopvault"}, args...))
	var ec cli.ExitCoder
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ec):
		code = ec.ExitCode()
		if err.Error() != "" {
			errb.WriteString(err.Error() + "\n")
		}
	case errors.Is(err, errUsage):
		code = 2
		errb.WriteString(err.Error() + "\n")
	default:
		code = 1
		errb.WriteString(err.Error() + "\n")
	}
	return out.String(), errb.String(), code
}

// opsWriteConfig writes a valid configuration with the given extra TOML and
// returns its path and state directory.
func opsWriteConfig(t *testing.T, extra string) (path, stateDir string) {
	t.Helper()
	for _, k := range []string{config.EnvRepository, config.EnvHostKey, config.EnvRestoreKey, "SHOPVAULT_CONFIG"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	path = filepath.Join(dir, "shopvault.toml")
	src := fmt.Sprintf("repository = %q\nstate-dir = %q\ncache-dir = %q\n%s\n[[sources]]\npaths = [\"/var/www\"]\n",
		filepath.Join(dir, "repo"), stateDir, filepath.Join(dir, "cache"), extra)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, stateDir
}

func TestConfigCheck(t *testing.T) {
	good, _ := opsWriteConfig(t, "")
	out, errOut, code := runOps(t, "--config", good, "config", "check")
	if code != 0 || !strings.HasPrefix(out, "ok: "+good) {
		t.Errorf("check of a good file: code %d, out %q, err %q", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "shopvault.toml")
	src := "repository = \"/srv/repo\"\n\n[[sources]]\npaths = [\"var/www\"]\nexclude-cache = true\n\n[ssh]\nconnections = 12\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runOps(t, "--config", bad, "config", "check")
	if code != 1 {
		t.Errorf("check of a bad file: exit %d, want 1", code)
	}
	for _, want := range []string{
		"shopvault.toml:4: sources[0].paths[0]: ",
		"shopvault.toml:5: sources[0].exclude-cache: unknown key",
		"shopvault.toml:8: ssh.connections: 12 is more than 8",
		"3 problem(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	// SHOPVAULT_CONFIG chooses the file when --config is absent.
	t.Setenv("SHOPVAULT_CONFIG", good)
	if _, errOut, code := runOps(t, "config", "check"); code != 0 {
		t.Errorf("SHOPVAULT_CONFIG not used: %d %s", code, errOut)
	}
	t.Setenv("SHOPVAULT_CONFIG", "")

	_, errOut, code = runOps(t, "--config", filepath.Join(t.TempDir(), "missing.toml"), "config", "check")
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: code %d, %q", code, errOut)
	}
}

func TestConfigExample(t *testing.T) {
	out, errOut, code := runOps(t, "config", "example", "--domain", "boutique.example.fr")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	c, err := config.Parse("example.toml", []byte(out))
	if err != nil {
		t.Fatalf("printed example does not validate: %v", err)
	}
	if c.Sources[0].Paths[0] != "/var/www/vhosts/boutique.example.fr/httpdocs" {
		t.Errorf("domain not used: %v", c.Sources[0].Paths)
	}
	if _, _, code := runOps(t, "config", "example", "--domain", "a b"); code == 0 {
		t.Error("a domain with a space was accepted")
	}
}

func TestScheduleInstall(t *testing.T) {
	cfgPath, _ := opsWriteConfig(t, "[schedule]\nbackup = \"*-*-* 02:15\"\ncheck = \"off\"\n")
	out := filepath.Join(t.TempDir(), "units")
	stdout, errOut, code := runOps(t, "--config", cfgPath, "schedule", "install", "--dry-run", "--output", out, "--binary", "/opt/sv/shopvault")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s", out)
	}
	for _, want := range []string{"OnCalendar=*-*-* 02:15", "ExecStart=/opt/sv/shopvault --config " + cfgPath + " run"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if strings.Contains(stdout, schedule.CheckTimer) {
		t.Error("check timer written although check = \"off\"")
	}

	if _, errOut, code := runOps(t, "--config", cfgPath, "schedule", "install", "--output", out, "--binary", "/opt/sv/shopvault"); code != 0 {
		t.Fatalf("install: exit %d: %s", code, errOut)
	}
	timer, err := os.ReadFile(filepath.Join(out, schedule.BackupTimer))
	if err != nil || !strings.Contains(string(timer), "OnCalendar=*-*-* 02:15\n") || !strings.Contains(string(timer), "Persistent=true\n") {
		t.Errorf("timer: %v\n%s", err, timer)
	}
	if _, errOut, code := runOps(t, "schedule", "uninstall", "--output", out); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errOut)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("uninstall left %v", left)
	}

	bad, _ := opsWriteConfig(t, "bogus = 1\n")
	if _, errOut, code := runOps(t, "--config", bad, "schedule", "install", "--output", out); code != 1 || !strings.Contains(errOut, "bogus") {
		t.Errorf("install with a bad config: exit %d: %s", code, errOut)
	}
}

func opsSaveRun(t *testing.T, dir string, s schedule.RunSummary) {
	t.Helper()
	if _, err := schedule.SaveState(dir, s); err != nil {
		t.Fatal(err)
	}
}

func TestStatusNagios(t *testing.T) {
	now := time.Now()
	cfgPath, stateDir := opsWriteConfig(t, "")

	// No state yet: UNKNOWN.
	out, _, code := runOps(t, "--config", cfgPath, "status", "--nagios")
	if code != schedule.NagiosUnknown || !strings.HasPrefix(out, "SHOPVAULT UNKNOWN") {
		t.Errorf("no state: exit %d, %q", code, out)
	}

	for _, tc := range []struct {
		age  time.Duration
		code int
		word string
	}{
		{2 * time.Hour, schedule.NagiosOK, "OK"},
		{30 * time.Hour, schedule.NagiosWarning, "WARNING"},
		{60 * time.Hour, schedule.NagiosCritical, "CRITICAL"},
	} {
		opsSaveRun(t, stateDir, schedule.RunSummary{Command: "run", Snapshot: "abcdef0123", Start: now.Add(-tc.age - time.Minute), Duration: time.Minute, Result: schedule.ResultOK})
		out, _, code := runOps(t, "--config", cfgPath, "status", "--nagios")
		if code != tc.code || !strings.HasPrefix(out, "SHOPVAULT "+tc.word+" - ") {
			t.Errorf("age %s: exit %d, %q; want %d %s", tc.age, code, out, tc.code, tc.word)
		}
	}
	// Thresholds from flags, with days.
	out, _, code = runOps(t, "--config", cfgPath, "status", "--nagios", "--warning", "3d", "--critical", "4d")
	if code != schedule.NagiosOK {
		t.Errorf("60h old with --warning 3d: exit %d, %q", code, out)
	}
	// Bad flags and a broken config are UNKNOWN in Nagios mode.
	if out, _, code := runOps(t, "--config", cfgPath, "status", "--nagios", "--warning", "soon"); code != schedule.NagiosUnknown || !strings.HasPrefix(out, "SHOPVAULT UNKNOWN") {
		t.Errorf("bad --warning: exit %d, %q", code, out)
	}
	if out, _, code := runOps(t, "--config", filepath.Join(t.TempDir(), "none.toml"), "status", "--nagios"); code != schedule.NagiosUnknown || !strings.HasPrefix(out, "SHOPVAULT UNKNOWN") {
		t.Errorf("missing config: exit %d, %q", code, out)
	}

	// --json carries the state and the evaluation.
	out, errOut, code := runOps(t, "--config", cfgPath, "status", "--json")
	var v struct {
		State schedule.State     `json:"state"`
		Check struct{ Code int } `json:"check"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Check.Code != schedule.NagiosCritical || v.State.LastRun["run"].Snapshot != "abcdef0123" {
		t.Errorf("--json: exit %d, %q, %s", code, out, errOut)
	}
	// Plain status lists the commands.
	out, _, code = runOps(t, "--config", cfgPath, "status")
	if code != 0 || !strings.Contains(out, "abcdef01") || !strings.Contains(out, "run ") {
		t.Errorf("plain status: exit %d\n%s", code, out)
	}
}

type opsPingServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func opsNewPingServer(t *testing.T) *opsPingServer {
	p := &opsPingServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths = append(p.paths, r.URL.Path)
		p.mu.Unlock()
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *opsPingServer) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths...)
}

func TestNotifyFailure(t *testing.T) {
	srv := opsNewPingServer(t)
	cfgPath, _ := opsWriteConfig(t, fmt.Sprintf("[notifications]\nping-failure = %q\n", srv.URL+"/fail"))
	_, errOut, code := runOps(t, "--config", cfgPath, "notify", "failure", "--unit", "shopvault-backup.service")
	if code != 0 || !strings.Contains(errOut, "shopvault-backup.service failed") {
		t.Errorf("notify: exit %d, %q", code, errOut)
	}
	if got := srv.got(); len(got) != 1 || got[0] != "/fail" {
		t.Errorf("pings %v, want [/fail]", got)
	}
}

func TestRecordRun(t *testing.T) {
	srv := opsNewPingServer(t)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Notifications = config.Notifications{
		PingStart: hang.URL + "/start", PingSuccess: srv.URL + "/ok", PingFailure: srv.URL + "/fail",
		PingTimeout: 100 * time.Millisecond, PrometheusTextfile: filepath.Join(dir, "shopvault.prom"),
	}
	var stdout, stderr bytes.Buffer
	// A hanging monitor only produces a warning.
	opsRunStart(t.Context(), cfg, nil, &stderr)
	if !strings.Contains(stderr.String(), "warning: ping") {
		t.Errorf("hanging start ping: %q", stderr.String())
	}
	s := schedule.RunSummary{Command: "run", Snapshot: "0123abcd", Start: time.Now().Add(-time.Minute), Duration: time.Minute, Files: 3, BytesAdded: 42, Result: schedule.ResultOK}
	opsRecordRun(t.Context(), cfg, nil, s, &stdout, &stderr)
	var line map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &line); err != nil || line["snapshot"] != "0123abcd" {
		t.Errorf("JSON line %q: %v", stdout.String(), err)
	}
	st, err := schedule.LoadState(cfg.StateDir)
	if err != nil || st.LastSuccess["run"].Snapshot != "0123abcd" {
		t.Errorf("state: %+v, %v", st, err)
	}
	prom, err := os.ReadFile(cfg.Notifications.PrometheusTextfile)
	if err != nil || !strings.Contains(string(prom), `shopvault_last_run_bytes_added{command="run"} 42`) {
		t.Errorf("textfile: %v\n%s", err, prom)
	}
	s.Result = schedule.ResultPartial
	opsRecordRun(t.Context(), cfg, nil, s, &stdout, &stderr)
	if got := srv.got(); len(got) != 2 || got[0] != "/ok" || got[1] != "/fail" {
		t.Errorf("pings %v, want [/ok /fail]", got)
	}
}
