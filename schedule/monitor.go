package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Result is the outcome of a run.
type Result string

// Results, matching the exit codes 0, 3 and 1.
const (
	ResultOK      Result = "ok"
	ResultPartial Result = "partial" // some files were unreadable
	ResultFailed  Result = "failed"
)

// Code is the exit code for the result: 0 ok, 3 partial, 1 failed.
func (r Result) Code() int {
	switch r {
	case ResultOK:
		return 0
	case ResultPartial:
		return 3
	default:
		return 1
	}
}

// RunSummary describes one run of a command (backup, run, check, drill,
// forget, prune).
type RunSummary struct {
	Command    string        `json:"command"`
	Snapshot   string        `json:"snapshot,omitempty"`
	Start      time.Time     `json:"start"`
	Duration   time.Duration `json:"-"`
	Files      int64         `json:"files"`
	BytesRead  int64         `json:"bytes_read"`
	BytesAdded int64         `json:"bytes_added"`
	Errors     int64         `json:"errors"`
	Result     Result        `json:"result"`
	// Message is the error of a failed run, or a note.
	Message string `json:"message,omitempty"`
}

// End is Start plus Duration.
func (s RunSummary) End() time.Time { return s.Start.Add(s.Duration) }

// MarshalJSON writes Duration as duration_seconds.
func (s RunSummary) MarshalJSON() ([]byte, error) {
	type plain RunSummary // no methods: no recursion
	return json.Marshal(struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}{plain(s), math.Round(s.Duration.Seconds()*1000) / 1000})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *RunSummary) UnmarshalJSON(data []byte) error {
	type plain RunSummary
	var v struct {
		plain
		DurationSeconds float64 `json:"duration_seconds"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*s = RunSummary(v.plain)
	s.Duration = time.Duration(v.DurationSeconds * float64(time.Second))
	return nil
}

// WriteJSONLine writes the summary as one line of JSON (for the journal).
func (s RunSummary) WriteJSONLine(w io.Writer) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode run summary: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Ping fetches url (a healthchecks.io-style ping) with GET, bounded by
// timeout. Any failure, including a status of 400 or more, is returned for
// the caller to log: a dead monitor must never fail a backup. A nil client
// means a default client.
func Ping(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	if client == nil {
		client = &http.Client{}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("ping %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "shopvault")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("ping %s: HTTP status %s", url, resp.Status)
	}
	return nil
}

// StateFile is the name of the state file in the state directory.
const StateFile = "state.json"

// State is the last run and the last successful run of each command.
type State struct {
	Version     int                   `json:"version"`
	LastRun     map[string]RunSummary `json:"last_run"`
	LastSuccess map[string]RunSummary `json:"last_success"`
}

// LoadState reads the state file of dir. A missing file gives an error
// that wraps os.ErrNotExist.
func LoadState(dir string) (State, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return State{}, fmt.Errorf("load state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("load state %s: %w (remove the file; the next run writes a new one)", filepath.Join(dir, StateFile), err)
	}
	if st.Version != 1 {
		return State{}, fmt.Errorf("load state %s: unknown version %d", filepath.Join(dir, StateFile), st.Version)
	}
	return st, nil
}

// SaveState records s as the last run of its command (and as the last
// success when its result is ok or partial) in dir's state file, atomically,
// and returns the new state. A missing or unreadable old state starts anew.
func SaveState(dir string, s RunSummary) (State, error) {
	if s.Command == "" {
		return State{}, errors.New("save state: summary without a command")
	}
	st, err := LoadState(dir)
	if err != nil {
		st = State{}
	}
	st.Version = 1
	if st.LastRun == nil {
		st.LastRun = map[string]RunSummary{}
	}
	if st.LastSuccess == nil {
		st.LastSuccess = map[string]RunSummary{}
	}
	st.LastRun[s.Command] = s
	if s.Result == ResultOK || s.Result == ResultPartial {
		st.LastSuccess[s.Command] = s
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return State{}, fmt.Errorf("save state: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return State{}, fmt.Errorf("save state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, StateFile), append(data, '\n'), 0o644); err != nil {
		return State{}, fmt.Errorf("save state: %w", err)
	}
	return st, nil
}

// BackupCommands are the commands whose success counts as a backup for
// Nagios and LastBackup.
var backupCommands = []string{"run", "backup"}

// LastBackup returns the newest successful backup (of `run` or `backup`).
func (st State) LastBackup() (RunSummary, bool) {
	var best RunSummary
	found := false
	for _, c := range backupCommands {
		if s, ok := st.LastSuccess[c]; ok && (!found || s.End().After(best.End())) {
			best, found = s, true
		}
	}
	return best, found
}

// lastBackupRun returns the newest backup run, successful or not.
func (st State) lastBackupRun() (RunSummary, bool) {
	var best RunSummary
	found := false
	for _, c := range backupCommands {
		if s, ok := st.LastRun[c]; ok && (!found || s.End().After(best.End())) {
			best, found = s, true
		}
	}
	return best, found
}

// Prometheus metric names written by WritePrometheusTextfile.
const (
	MetricLastSuccess = "shopvault_last_success_timestamp_seconds"
	MetricDuration    = "shopvault_last_run_duration_seconds"
	MetricBytesAdded  = "shopvault_last_run_bytes_added"
	MetricFiles       = "shopvault_last_run_files"
	MetricErrors      = "shopvault_last_run_errors"
	MetricResult      = "shopvault_last_run_result"
	MetricLastRun     = "shopvault_last_run_timestamp_seconds"
)

// WritePrometheusTextfile writes the state in Prometheus' text format for
// node_exporter's textfile collector, atomically (temporary file and
// rename, so the collector never reads half a file), mode 0644. Every
// metric has a command label; shopvault_last_run_result is the exit code
// (0 ok, 1 failed, 3 partial).
func (st State) WritePrometheusTextfile(path string) error {
	var b strings.Builder
	cmds := make([]string, 0, len(st.LastRun))
	for c := range st.LastRun {
		cmds = append(cmds, c)
	}
	sort.Strings(cmds)
	metric := func(name, help string, value func(c string) (float64, bool)) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		for _, c := range cmds {
			if v, ok := value(c); ok {
				fmt.Fprintf(&b, "%s{command=%q} %s\n", name, c, formatFloat(v))
			}
		}
	}
	metric(MetricLastSuccess, "End time of the last successful run (unix seconds).", func(c string) (float64, bool) {
		s, ok := st.LastSuccess[c]
		return unixSeconds(s.End()), ok
	})
	metric(MetricLastRun, "End time of the last run (unix seconds).", func(c string) (float64, bool) {
		return unixSeconds(st.LastRun[c].End()), true
	})
	metric(MetricDuration, "Duration of the last run in seconds.", func(c string) (float64, bool) {
		return st.LastRun[c].Duration.Seconds(), true
	})
	metric(MetricBytesAdded, "Bytes added to the repository by the last run.", func(c string) (float64, bool) {
		return float64(st.LastRun[c].BytesAdded), true
	})
	metric(MetricFiles, "Files processed by the last run.", func(c string) (float64, bool) {
		return float64(st.LastRun[c].Files), true
	})
	metric(MetricErrors, "Errors of the last run.", func(c string) (float64, bool) {
		return float64(st.LastRun[c].Errors), true
	})
	metric(MetricResult, "Result of the last run as its exit code: 0 ok, 1 failed, 3 partial.", func(c string) (float64, bool) {
		return float64(st.LastRun[c].Result.Code()), true
	})
	if err := writeFileAtomic(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write prometheus textfile: %w", err)
	}
	return nil
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func formatFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.3f", v)
}

// Nagios exit codes.
const (
	NagiosOK       = 0
	NagiosWarning  = 1
	NagiosCritical = 2
	NagiosUnknown  = 3
)

// Nagios evaluates the age of the last successful backup for a Nagios or
// Icinga check: OK below warn, WARNING from warn, CRITICAL from crit, and
// UNKNOWN when st holds no backup (pass the zero State when the state file
// is missing). A newer failed or partial run turns OK into WARNING. line is
// the plugin output with performance data.
func Nagios(st State, warn, crit time.Duration, now time.Time) (exitCode int, line string) {
	if warn <= 0 || crit <= 0 || warn >= crit {
		return NagiosUnknown, fmt.Sprintf("SHOPVAULT UNKNOWN - invalid thresholds: warning %s must be below critical %s", warn, crit)
	}
	last, ok := st.LastBackup()
	if !ok {
		return NagiosUnknown, "SHOPVAULT UNKNOWN - no successful backup recorded yet"
	}
	age := now.Sub(last.End())
	code, label := NagiosOK, "OK"
	switch {
	case age >= crit:
		code, label = NagiosCritical, "CRITICAL"
	case age >= warn:
		code, label = NagiosWarning, "WARNING"
	}
	msg := fmt.Sprintf("last backup %s ago", humanAge(age))
	if age < -time.Minute {
		code, label = max(code, NagiosWarning), "WARNING"
		msg = fmt.Sprintf("last backup is dated %s in the future; check the clock", humanAge(-age))
	}
	if last.Snapshot != "" {
		msg += fmt.Sprintf(" (snapshot %s, %s added", short(last.Snapshot), HumanBytes(last.BytesAdded))
		if last.Result == ResultPartial {
			msg += fmt.Sprintf(", partial: %d unreadable", last.Errors)
		}
		msg += ")"
	}
	if run, ok := st.lastBackupRun(); ok && run.End().After(last.End()) && run.Result == ResultFailed {
		if code == NagiosOK {
			code, label = NagiosWarning, "WARNING"
		}
		msg += fmt.Sprintf("; the newer run at %s failed", run.Start.UTC().Format(time.RFC3339))
		if run.Message != "" {
			msg += ": " + oneLine(run.Message)
		}
	}
	perf := fmt.Sprintf("age=%ds;%d;%d;0 bytes_added=%dB files=%d errors=%d",
		int64(age.Seconds()), int64(warn.Seconds()), int64(crit.Seconds()), last.BytesAdded, last.Files, last.Errors)
	return code, fmt.Sprintf("SHOPVAULT %s - %s | %s", label, msg, perf)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "/") // | starts Nagios perfdata
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int64(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int64(d.Hours()), int64(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int64(d.Hours())/24, int64(d.Hours())%24)
	}
}

// HumanBytes formats a byte count with binary units ("1.5 MiB").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
