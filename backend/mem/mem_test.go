package mem_test

import (
	"testing"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/backendtest"
	"github.com/shopvault/shopvault/backend/mem"
)

func TestSuite(t *testing.T) {
	backendtest.RunSuite(t, func(t *testing.T) backend.Backend { return mem.New() })
}

func TestSuiteFaultyPassThrough(t *testing.T) {
	backendtest.RunSuite(t, func(t *testing.T) backend.Backend { return &backendtest.Faulty{Backend: mem.New()} })
}
