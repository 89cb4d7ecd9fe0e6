package repo

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shopvault/shopvault/chunk"
)

// FormatVersion is the repository format this code writes.
const FormatVersion = 1

// Config is the plaintext repository config file.
type Config struct {
	Version  int    `json:"version"`
	ID       string `json:"id"`
	Created  string `json:"created"`
	PackSize int64  `json:"pack_size"`
	// Chunker parameters (the polynomial is secret and lives in keys/).
	FileChunks chunk.Params `json:"file_chunks"`
	SQLChunks  chunk.Params `json:"sql_chunks"`
	// Recipients the repository was created with (informational: clients
	// pin their own copy). Host is empty in single-key mode.
	HostRecipients    []string `json:"host_recipients"`
	RestoreRecipients []string `json:"restore_recipients"`
}

// ParseConfig decodes and validates a config file.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, &CorruptError{What: "config", Err: err}
	}
	if c.Version != FormatVersion {
		return nil, fmt.Errorf("repository format version %d is not supported by this shopvault (supports %d); upgrade shopvault", c.Version, FormatVersion)
	}
	if len(c.ID) != 64 {
		return nil, &CorruptError{What: "config", Err: errors.New("invalid repository id")}
	}
	if err := c.FileChunks.Validate(); err != nil {
		return nil, &CorruptError{What: "config", Err: err}
	}
	if err := c.SQLChunks.Validate(); err != nil {
		return nil, &CorruptError{What: "config", Err: err}
	}
	if c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		return nil, &CorruptError{What: "config", Err: fmt.Errorf("pack size %d out of range", c.PackSize)}
	}
	if len(c.RestoreRecipients) == 0 {
		return nil, &CorruptError{What: "config", Err: errors.New("no restore recipients")}
	}
	return &c, nil
}

// secret is the repository secret, stored in keys/<id> encrypted to all
// host and restore recipients.
type secret struct {
	BlobKey    []byte    `json:"blob_key"`
	Polynomial chunk.Pol `json:"polynomial"`
}
