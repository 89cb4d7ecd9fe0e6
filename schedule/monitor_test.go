package schedule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sampleSummary() RunSummary {
	return RunSummary{
		Command: "run", Snapshot: "4f2a91c0d1e2f3a4", Start: time.Date(2026, 11, 28, 3, 7, 12, 0, time.UTC),
		Duration: 754500 * time.Millisecond, Files: 182311, BytesRead: 3 << 30, BytesAdded: 48 << 20, Errors: 0, Result: ResultOK,
	}
}

func TestJSONLineGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleSummary().WriteJSONLine(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.jsonl", buf.Bytes())
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Errorf("not one line: %q", buf.String())
	}
	// The line must carry what a log query needs, under stable names.
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["duration_seconds"] != 754.5 || m["result"] != "ok" || m["bytes_added"] != float64(48<<20) || m["snapshot"] != "4f2a91c0d1e2f3a4" {
		t.Errorf("fields: %v", m)
	}
	var back RunSummary
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || !reflect.DeepEqual(back, sampleSummary()) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestStateAndTextfile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadState of an empty dir = %v, want ErrNotExist", err)
	}
	ok := sampleSummary()
	if _, err := SaveState(dir, ok); err != nil {
		t.Fatal(err)
	}
	failed := RunSummary{Command: "run", Start: ok.Start.Add(24 * time.Hour), Duration: 30 * time.Second, Errors: 1, Result: ResultFailed, Message: "dial tcp: connection refused"}
	if _, err := SaveState(dir, failed); err != nil {
		t.Fatal(err)
	}
	check := RunSummary{Command: "check", Start: ok.Start.Add(2 * time.Hour), Duration: 90 * time.Second, Result: ResultOK}
	st, err := SaveState(dir, check)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadState(dir)
	if err != nil || !reflect.DeepEqual(loaded, st) {
		t.Fatalf("LoadState = %+v, %v; want %+v", loaded, err, st)
	}
	if !reflect.DeepEqual(loaded.LastSuccess["run"], ok) || !reflect.DeepEqual(loaded.LastRun["run"], failed) {
		t.Errorf("a failed run replaced the last success: %+v", loaded)
	}
	p := filepath.Join(dir, "node", "shopvault.prom")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := loaded.WritePrometheusTextfile(p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "shopvault.prom", got)
	// Independent of the golden file: the last success of run is the end
	// of the ok run, its result is the failed run's exit code.
	for _, line := range []string{
		`shopvault_last_success_timestamp_seconds{command="run"} 1795835986.500`, // 2026-11-28T03:07:12Z (1795835232) + 754.5s
		`shopvault_last_run_result{command="run"} 1`,
		`shopvault_last_run_result{command="check"} 0`,
		`shopvault_last_run_duration_seconds{command="run"} 30`,
		`shopvault_last_run_errors{command="run"} 1`,
	} {
		if !strings.Contains(string(got), line+"\n") {
			t.Errorf("textfile lacks %q", line)
		}
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode %v, %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "node", ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A corrupt state file is an error naming it, and SaveState recovers.
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), StateFile) {
		t.Errorf("corrupt state: %v", err)
	}
	if _, err := SaveState(dir, ok); err != nil {
		t.Errorf("SaveState over a corrupt file: %v", err)
	}
}

func TestPing(t *testing.T) {
	var hits atomic.Int32
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/fail" {
			http.Error(w, "nope", http.StatusNotFound)
		}
	}))
	defer okSrv.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)

	ctx := t.Context()
	if err := Ping(ctx, okSrv.Client(), okSrv.URL+"/abc", 5*time.Second); err != nil || hits.Load() != 1 {
		t.Errorf("ping ok server: %v (hits %d)", err, hits.Load())
	}
	if err := Ping(ctx, okSrv.Client(), okSrv.URL+"/fail", 5*time.Second); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("ping 404 = %v", err)
	}
	err := Ping(ctx, hang.Client(), hang.URL, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping hanging server = %v, want a deadline error", err)
	}
	if err := Ping(ctx, nil, "http://127.0.0.1:1/", time.Second); err == nil {
		t.Error("ping of a closed port succeeded")
	}
	if err := Ping(ctx, nil, "::not a url", time.Second); err == nil {
		t.Error("ping of a bad URL succeeded")
	}
}

func TestNagios(t *testing.T) {
	end := time.Date(2026, 11, 28, 3, 20, 0, 0, time.UTC)
	good := RunSummary{Command: "run", Snapshot: "4f2a91c0d1e2", Start: end.Add(-20 * time.Minute), Duration: 20 * time.Minute, BytesAdded: 1536, Files: 10, Result: ResultOK}
	st := State{Version: 1, LastRun: map[string]RunSummary{"run": good}, LastSuccess: map[string]RunSummary{"run": good}}
	failedLater := st
	failedLater.LastRun = map[string]RunSummary{"run": {Command: "run", Start: end.Add(time.Hour), Duration: time.Minute, Result: ResultFailed, Message: "repository locked | by pid 7"}}
	partial := good
	partial.Result, partial.Errors = ResultPartial, 2
	stPartial := State{Version: 1, LastRun: map[string]RunSummary{"backup": partial}, LastSuccess: map[string]RunSummary{"backup": partial}}
	warn, crit := 26*time.Hour, 50*time.Hour
	for _, tc := range []struct {
		name  string
		st    State
		now   time.Time
		warn  time.Duration
		code  int
		parts []string
	}{
		{"fresh", st, end.Add(5 * time.Hour), warn, NagiosOK, []string{"SHOPVAULT OK - last backup 5h00m ago (snapshot 4f2a91c0, 1.5 KiB added)", "| age=18000s;93600;180000;0"}},
		{"just below warning", st, end.Add(warn - time.Second), warn, NagiosOK, nil},
		{"at warning", st, end.Add(warn), warn, NagiosWarning, []string{"SHOPVAULT WARNING"}},
		{"critical", st, end.Add(3 * 24 * time.Hour), warn, NagiosCritical, []string{"SHOPVAULT CRITICAL - last backup 3d00h ago"}},
		{"no state", State{}, end, warn, NagiosUnknown, []string{"SHOPVAULT UNKNOWN"}},
		{"only failures", State{Version: 1, LastRun: failedLater.LastRun}, end, warn, NagiosUnknown, nil},
		{"newer run failed", failedLater, end.Add(2 * time.Hour), warn, NagiosWarning, []string{"failed: repository locked / by pid 7"}},
		{"partial", stPartial, end.Add(time.Hour), warn, NagiosOK, []string{"partial: 2 unreadable"}},
		{"bad thresholds", st, end, 60 * time.Hour, NagiosUnknown, []string{"invalid thresholds"}},
		{"future", st, end.Add(-3 * time.Hour), warn, NagiosWarning, []string{"in the future"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, line := Nagios(tc.st, tc.warn, crit, tc.now)
			if code != tc.code {
				t.Errorf("code %d, want %d (%s)", code, tc.code, line)
			}
			for _, p := range tc.parts {
				if !strings.Contains(line, p) {
					t.Errorf("line %q lacks %q", line, p)
				}
			}
			if strings.Count(line, "|") > 1 || strings.Contains(line, "\n") {
				t.Errorf("line %q breaks the plugin format", line)
			}
		})
	}
}
