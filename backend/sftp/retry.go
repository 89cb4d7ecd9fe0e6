package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	pkgsftp "github.com/pkg/sftp"

	"github.com/shopvault/shopvault/backend"
)

// transientError marks a failure that a reconnect and retry may fix.
type transientError struct{ err error }

func (t *transientError) Error() string { return t.err.Error() }
func (t *transientError) Unwrap() error { return t.err }

func transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

// isTransient reports whether the retry loop should try err again.
func isTransient(err error) bool {
	if err == nil || errors.Is(err, backend.ErrPermanent) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var t *transientError
	return errors.As(err, &t)
}

// connectionLost reports whether err (from an SFTP call on c) means the
// connection is gone rather than that the operation failed on the server.
func connectionLost(c *conn, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, pkgsftp.ErrSSHFxConnectionLost) || errors.Is(err, pkgsftp.ErrSSHFxNoConnection) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var se *pkgsftp.StatusError
	if errors.As(err, &se) {
		// The server answered: the connection works.
		return se.FxCode() == pkgsftp.ErrSSHFxConnectionLost || se.FxCode() == pkgsftp.ErrSSHFxNoConnection
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// From the transport, never from a file read (callers handle
		// a file's EOF themselves before classifying).
		return true
	}
	return c != nil && c.isDead()
}

// classify turns an error of an SFTP call on c into the backend's terms:
// not-exist stays fs.ErrNotExist, permission denied is permanent, a lost
// connection is transient (and the connection is closed so the pool
// reconnects). what names the operation and the object.
func classify(c *conn, what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, os.ErrPermission):
		return backend.Permanent(fmt.Errorf("%s: permission denied on the server (check the owner and mode of the repository directory): %w", what, err))
	case connectionLost(c, err):
		if c != nil {
			c.close()
		}
		return transient(fmt.Errorf("%s: connection lost: %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// retry runs op with a pooled connection until it succeeds, fails with a
// non-transient error, ctx ends, or the policy's time is up. op must be
// idempotent. attempt counts from 1.
func (b *Backend) retry(ctx context.Context, what string, op func(c *conn, attempt int) error) error {
	p := b.cfg.Retry
	start := b.cfg.Now()
	delay := p.Initial
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		s, c, err := b.pool.get(ctx)
		if err == nil {
			err = op(c, attempt)
			b.pool.put(s)
		}
		if err == nil {
			return nil
		}
		if !isTransient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (after: %w)", what, ctx.Err(), err)
		}
		if b.cfg.Now().Sub(start)+delay > p.MaxElapsed {
			return fmt.Errorf("%s: giving up after %d attempts in %s: %w", what, attempt, b.cfg.Now().Sub(start).Round(1e6), err)
		}
		if b.cfg.OnRetry != nil {
			b.cfg.OnRetry(what, attempt, delay, err)
		}
		if err := b.cfg.Sleep(ctx, delay); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		delay *= 2
		if delay > p.Max {
			delay = p.Max
		}
	}
}
