package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/shopvault/shopvault/backend"
	"github.com/shopvault/shopvault/backend/local"
	"github.com/shopvault/shopvault/backend/sftp"
	"github.com/shopvault/shopvault/config"
	"github.com/shopvault/shopvault/repo"
)

// repoFlags are accepted by every command that opens a repository.
func repoFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "repo", Aliases: []string{"r"}, Usage: "repository: a local path or sftp://user@host[:port]/path", EnvVars: []string{"SHOPVAULT_REPO"}},
		&cli.StringFlag{Name: "host-key", Usage: "host key file (writes backups, cannot read them)", EnvVars: []string{"SHOPVAULT_HOST_KEY"}},
		&cli.StringFlag{Name: "restore-key", Usage: "restore key file (reads backups; keep it off the server)", EnvVars: []string{"SHOPVAULT_RESTORE_KEY"}},
		&cli.StringFlag{Name: "known-hosts", Usage: "SFTP: known_hosts file (default ~/.ssh/known_hosts)", EnvVars: []string{"SHOPVAULT_KNOWN_HOSTS"}},
		&cli.StringFlag{Name: "ssh-key", Usage: "SFTP: private key file (default: ssh-agent, then ~/.ssh/id_*)", EnvVars: []string{"SHOPVAULT_SSH_KEY"}},
		&cli.StringFlag{Name: "ssh-passphrase-file", Usage: "SFTP: file holding the private key's passphrase", EnvVars: []string{"SHOPVAULT_SSH_PASSPHRASE_FILE"}},
		&cli.StringFlag{Name: "accept-host-key", Usage: "SFTP: accept and record this host key fingerprint (SHA256:…) on first contact"},
		&cli.IntFlag{Name: "connections", Usage: "SFTP: parallel SSH connections (max 8)", Value: sftp.DefaultConnections},
		&cli.IntFlag{Name: "limit-upload", Usage: "SFTP: upload limit in KiB/s (0 = none)"},
		&cli.IntFlag{Name: "limit-download", Usage: "SFTP: download limit in KiB/s (0 = none)"},
	}
}

func withRepoFlags(extra ...cli.Flag) []cli.Flag { return append(repoFlags(), extra...) }

// optionalConfig loads the configuration file when it exists. A missing
// file is not an error: every setting can come from flags and the
// environment. A file that exists but is invalid is an error.
func optionalConfig(c *cli.Context) (*config.Config, error) {
	p := c.String("config")
	if p == "" {
		return nil, nil
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return config.LoadEnv(p, os.Getenv)
}

// setting returns a flag's value, else the configuration's.
func setting(c *cli.Context, flag string, fromConfig func(*config.Config) string) string {
	if v := c.String(flag); v != "" {
		return v
	}
	cfg, err := optionalConfig(c)
	if err != nil || cfg == nil {
		return ""
	}
	return fromConfig(cfg)
}

func repoLocation(c *cli.Context) (string, error) {
	if _, err := optionalConfig(c); err != nil {
		return "", err
	}
	loc := setting(c, "repo", func(cfg *config.Config) string { return cfg.Repository })
	if loc == "" {
		return "", usageError("no repository given: pass --repo PATH|sftp://user@host/path or set SHOPVAULT_REPO")
	}
	return loc, nil
}

func isSFTP(loc string) bool { return strings.HasPrefix(loc, "sftp://") }

func sftpConfig(c *cli.Context, loc string) (sftp.Config, error) {
	cfg, err := sftp.ParseURL(loc)
	if err != nil {
		return cfg, err
	}
	cfg.KnownHostsFile = setting(c, "known-hosts", func(f *config.Config) string { return f.SSH.KnownHosts })
	cfg.KeyFile = setting(c, "ssh-key", func(f *config.Config) string { return f.SSH.KeyFile })
	cfg.KeyPassphraseFile = setting(c, "ssh-passphrase-file", func(f *config.Config) string { return f.SSH.PassphraseFile })
	cfg.AcceptHostKey = setting(c, "accept-host-key", func(f *config.Config) string { return f.SSH.AcceptHostKey })
	cfg.OnRetry = func(op string, attempt int, delay time.Duration, err error) {
		warnf(c, "warning: %s failed (%v); reconnecting, attempt %d in %s", op, err, attempt, delay.Round(time.Millisecond))
	}
	cfg.Connections = c.Int("connections")
	cfg.LimitUploadKiB = c.Int("limit-upload")
	cfg.LimitDownloadKiB = c.Int("limit-download")
	if fc, _ := optionalConfig(c); fc != nil {
		if !c.IsSet("connections") && fc.SSH.Connections > 0 {
			cfg.Connections = fc.SSH.Connections
		}
		if !c.IsSet("limit-upload") && fc.SSH.LimitUpload > 0 {
			cfg.LimitUploadKiB = int(fc.SSH.LimitUpload / 1024)
		}
		if !c.IsSet("limit-download") && fc.SSH.LimitDownload > 0 {
			cfg.LimitDownloadKiB = int(fc.SSH.LimitDownload / 1024)
		}
		if fc.SSH.ConnectTimeout > 0 {
			cfg.DialTimeout = fc.SSH.ConnectTimeout
		}
	}
	return cfg, nil
}

// Metadata an SFTP repository reads ahead when it opens (sftp.Config
// ReadAhead): every command loads the keys, the index and the snapshots;
// a command on one snapshot its refs list too.
func repoAhead() []backend.FileType {
	return []backend.FileType{backend.KeyFile, backend.IndexFile, backend.SnapshotFile}
}

func snapshotAhead() []backend.FileType { return append(repoAhead(), backend.RefsFile) }

// openBackend connects to the repository's storage; create prepares a
// new repository location. An existing SFTP repository reads ahead the
// metadata of the types ahead.
func openBackend(ctx context.Context, c *cli.Context, create bool, ahead []backend.FileType) (backend.Backend, error) {
	loc, err := repoLocation(c)
	if err != nil {
		return nil, err
	}
	if isSFTP(loc) {
		cfg, err := sftpConfig(c, loc)
		if err != nil {
			return nil, err
		}
		if create {
			return sftp.Create(ctx, cfg)
		}
		cfg.ReadAhead = ahead
		be, err := sftp.Open(ctx, cfg)
		if err != nil && backend.IsNotExist(err) {
			return nil, fmt.Errorf("%w at %s (run 'shopvault init' first): %v", repo.ErrNoRepository, cfg.Location(), err)
		}
		return be, err
	}
	if create {
		return local.Create(loc)
	}
	be, err := local.Open(loc)
	if err != nil && backend.IsNotExist(err) {
		return nil, fmt.Errorf("%w: %v", repo.ErrNoRepository, err)
	}
	return be, err
}

type keyNeed int

const (
	anyKey keyNeed = iota
	readKey
)

// openRepo opens the repository with the keys given and loads its index.
// need=readKey requires the restore key.
func openRepo(ctx context.Context, c *cli.Context, need keyNeed) (*repo.Repository, error) {
	r, err := openUnindexed(ctx, c, need, repoAhead())
	if err != nil {
		return nil, err
	}
	if err := loadIndex(ctx, c, r); err != nil {
		r.Backend().Close()
		return nil, err
	}
	return r, nil
}

// openUnindexed is openRepo without loading the index.
func openUnindexed(ctx context.Context, c *cli.Context, need keyNeed, ahead []backend.FileType) (*repo.Repository, error) {
	if _, err := optionalConfig(c); err != nil {
		return nil, err
	}
	var keys []*repo.KeyFile
	for _, flag := range []string{"restore-key", "host-key"} {
		p := setting(c, flag, func(f *config.Config) string {
			if flag == "host-key" {
				return f.HostKey
			}
			return f.RestoreKey
		})
		if p == "" {
			continue
		}
		k, err := repo.LoadKeyFile(p)
		if err != nil {
			return nil, err
		}
		if cfg, _ := optionalConfig(c); cfg != nil && len(cfg.Recipients.Restore) > 0 {
			// The configuration's pins win over the key file's.
			k.PinHost, k.PinRestore = cfg.Recipients.Host, cfg.Recipients.Restore
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		if need == readKey {
			return nil, usageError("this command reads backups and needs the restore key: pass --restore-key FILE or set SHOPVAULT_RESTORE_KEY")
		}
		return nil, usageError("no key given: pass --host-key FILE (or --restore-key FILE), or set SHOPVAULT_HOST_KEY")
	}
	be, err := openBackend(ctx, c, false, ahead)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, keys...)
	if err != nil {
		be.Close()
		return nil, err
	}
	if need == readKey && !r.CanRead() {
		be.Close()
		return nil, repo.ErrNeedRestoreKey
	}
	return r, nil
}

// loadIndex loads the index; a damaged index file is a warning (check
// and repair name it), anything else an error.
func loadIndex(ctx context.Context, c *cli.Context, r *repo.Repository) error {
	if err := r.LoadIndex(ctx); err != nil {
		var ce *repo.CorruptError
		if !errors.As(err, &ce) {
			return err
		}
		warnf(c, "warning: %v", err)
	}
	return nil
}

func warnf(c *cli.Context, format string, args ...any) {
	fmt.Fprintf(c.App.ErrWriter, format+"\n", args...)
}

// lockRepo takes a lock, logging stale locks taken over.
func lockRepo(ctx context.Context, c *cli.Context, r *repo.Repository, exclusive bool) (*repo.LockHandle, error) {
	return r.Lock(ctx, repo.LockOptions{Exclusive: exclusive, Now: time.Now, Logf: func(f string, a ...any) { warnf(c, f, a...) }})
}

func defaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/shopvault"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "shopvault")
	}
	return filepath.Join(os.TempDir(), "shopvault-cache")
}

type lockMode int

const (
	noLock lockMode = iota
	sharedLock
	exclusiveLock
)

// withSnapshot opens the repository without a lock, finds the snapshot
// ref while the index loads (each is a listing and a batch of loads: round
// trips on SFTP), runs fn and closes the repository.
func withSnapshot(c *cli.Context, need keyNeed, ref string, fn func(r *repo.Repository, sn *repo.Snapshot) error) error {
	ctx := c.Context
	r, err := openUnindexed(ctx, c, need, snapshotAhead())
	if err != nil {
		return err
	}
	defer r.Backend().Close()
	var sn *repo.Snapshot
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return loadIndex(gctx, c, r) })
	g.Go(func() (err error) {
		sn, err = r.FindSnapshot(gctx, ref)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return fn(r, sn)
}

// withRepo opens the repository, takes the lock, runs fn, and releases
// both whatever fn returns.
func withRepo(c *cli.Context, need keyNeed, lock lockMode, fn func(r *repo.Repository) error) error {
	ctx := c.Context
	r, err := openRepo(ctx, c, need)
	if err != nil {
		return err
	}
	defer r.Backend().Close()
	if lock != noLock {
		lh, err := lockRepo(ctx, c, r, lock == exclusiveLock)
		if err != nil {
			return err
		}
		defer lh.Unlock(context.WithoutCancel(ctx))
		// A prune may have run between reading the index and taking the
		// lock: never trust blobs it may have deleted.
		if err := r.ReloadIndex(ctx); err != nil {
			return err
		}
	}
	return fn(r)
}
