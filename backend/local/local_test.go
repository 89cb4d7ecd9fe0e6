package local_test

import (
	"path/filepath"
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/local"
)

func TestSuite(t *testing.T) {
	backendtest.RunSuite(t, func(t *testing.T) backend.Backend {
		be, err := local.Create(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

func TestOpenMissing(t *testing.T) {
	_, err := local.Open(filepath.Join(t.TempDir(), "nothing"))
	if !backend.IsNotExist(err) {
		t.Fatalf("open of a missing repository: got %v, want not-exist", err)
	}
}
