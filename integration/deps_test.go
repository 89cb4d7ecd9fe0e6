package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection keeps the layering of DESIGN.md: lower packages never
// import higher ones.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/shopvault/shopvault/"
	forbidden := map[string][]string{
		"chunk":              {""}, // nothing of ours
		"backend":            {""},
		"backend/local":      {"repo", "backup", "restore", "dump", "recovery", "config", "schedule", "backend/sftp"},
		"backend/sftp":       {"repo", "backup", "restore", "dump", "recovery", "config", "schedule", "backend/local"},
		"dump":               {"repo", "backup", "restore", "recovery", "backend", "config", "schedule"},
		"repo":               {"backend/sftp", "backend/local", "backup", "restore", "dump", "recovery", "config", "schedule"},
		"backup":             {"restore", "recovery", "config", "schedule", "backend/sftp", "backend/local"},
		"restore":            {"backup", "recovery", "config", "schedule", "backend/sftp", "backend/local"},
		"restore/prestashop": {"repo", "backup", "restore", "recovery", "dump", "backend"},
		"recovery":           {"backup", "config", "schedule", "backend/sftp", "backend/local"},
		"config":             {"repo", "backup", "restore", "recovery", "dump", "backend", "schedule"},
		"schedule":           {"backup", "restore", "recovery", "dump", "backend/sftp", "backend/local"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if !strings.HasPrefix(dep, mod) || dep == mod+pkg {
				continue
			}
			own := strings.TrimPrefix(dep, mod)
			if strings.HasPrefix(own, "cmd/") {
				t.Errorf("%s imports %s: only main may", pkg, own)
			}
			for _, b := range bad {
				if b == "" || own == b || strings.HasPrefix(own, b+"/") {
					t.Errorf("%s imports %s, against the layering of DESIGN.md", pkg, own)
				}
			}
		}
	}
}
