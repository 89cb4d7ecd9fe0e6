package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIRunFromConfig drives the nightly 'run' from a configuration file:
// several nights, retention keep-last 2, prune, state for status --nagios,
// and a configuration whose pinned recipients do not match the repository.
func TestCLIRunFromConfig(t *testing.T) {
	c := newLocalCLI(t)
	c.init(t)
	shop := filepath.Join(c.dir, "shop")
	writeShop(t, shop, 1)
	state := filepath.Join(c.dir, "state")
	prom := filepath.Join(c.dir, "shopvault.prom")
	cfgPath := filepath.Join(c.dir, "shopvault.toml")
	cfg := fmt.Sprintf(`repository = %q
host-key = %q
cache-dir = %q
state-dir = %q

[[sources]]
paths = [%q]

[retention]
keep-last = 2

[notifications]
prometheus-textfile = %q
`, c.repo, filepath.Join(c.dir, "host.key"), filepath.Join(c.dir, "cache"), state, shop, prom)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SHOPVAULT_CONFIG=" + cfgPath, "SHOPVAULT_REPO=", "SHOPVAULT_HOST_KEY="}
	c.ok(t, env, "config", "check")
	for night := 0; night < 4; night++ {
		if err := os.WriteFile(filepath.Join(shop, fmt.Sprintf("night%d.txt", night)), []byte(strings.Repeat("order\n", 1000*(night+1))), 0o644); err != nil {
			t.Fatal(err)
		}
		out := c.ok(t, env, "run")
		if !strings.Contains(out, `"result":"ok"`) {
			t.Fatalf("night %d: run printed %q", night, out)
		}
	}
	if out := c.ok(t, env, "snapshots", "--json"); strings.Count(out, `"id"`) != 2 {
		t.Fatalf("keep-last 2 after 4 nights:\n%s", out)
	}
	c.ok(t, append(env, c.restoreEnv()...), "check", "--read-data")
	if _, _, code := c.exec(t, env, "status", "--nagios"); code != 0 {
		t.Fatalf("status --nagios after a good run: exit %d", code)
	}
	if data, err := os.ReadFile(prom); err != nil || !strings.Contains(string(data), "shopvault_last_success_timestamp_seconds") {
		t.Fatalf("prometheus textfile: %v\n%s", err, data)
	}

	// A configuration pinning other recipients is refused (exit 12).
	bad := cfg + "\n[recipients]\nrestore = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n"
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := c.exec(t, env, "backup", shop)
	if code != 12 || !strings.Contains(errOut, "pinned") {
		t.Fatalf("mismatching pins: exit %d %s", code, errOut)
	}
	// A malformed configuration names the line.
	if err := os.WriteFile(cfgPath, []byte("repository = 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.exec(t, env, "snapshots")
	if code == 0 || !strings.Contains(errOut, ":1:") {
		t.Fatalf("malformed config: exit %d %s", code, errOut)
	}
}
