package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"scatter/artifact/core"
	"scatter/orchestrate/deploy"
)

// The deployer's side of key custody (custody.go): what `scatter publish`,
// `deploy`, `rollback` and `abort` ask of the origin daemon.

// Publish sends a release tree as a tar stream to the daemon, which builds,
// signs and announces it.
func (c *Control) Publish(ctx context.Context, repo, version, message string, tarStream io.Reader) (*PublishResult, error) {
	q := url.Values{"repo": {repo}, "version": {version}, "message": {message}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/publish?"+q.Encode(), tarStream)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res PublishResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("daemon publish: %w", err)
	}
	return &res, nil
}

// InstallConfig has the daemon install b as the repo's scatter.yaml.
func (c *Control) InstallConfig(ctx context.Context, repo string, b []byte) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/config?repo="+url.QueryEscape(repo), bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Lease is a repo's deploy lock, held by the daemon for this process for
// as long as the lease's connection lasts.
type Lease struct {
	// User is who the daemon says holds it: the caller's Unix user.
	User string
	// Abort receives who asked, when someone runs `scatter abort`; it is
	// closed when the connection to the daemon breaks (the lock is then
	// free: the deploy must stop).
	Abort  <-chan string
	cancel context.CancelFunc
	done   chan struct{}
}

// Release frees the lock.
func (l *Lease) Release() {
	l.cancel()
	<-l.done
}

// Lock asks the daemon for the repo's deploy lock for deploy. A lock held
// by another deploy is refused, naming its holder.
func (c *Control) Lock(ctx context.Context, repo, deployID, message string) (*Lease, error) {
	q := url.Values{"repo": {repo}, "deploy": {deployID}, "message": {message}}
	lctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel) // until the first line only
	resp, err := c.do(lctx, http.MethodPost, "/v1/lock?"+q.Encode(), nil)
	stop()
	if err != nil {
		cancel()
		return nil, err
	}
	br := bufio.NewReader(resp.Body)
	var first struct{ User string }
	line, err := br.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &first)
	}
	if err != nil {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("deploy lock: %w", err)
	}
	abort := make(chan string, 1)
	l := &Lease{User: first.User, Abort: abort, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer resp.Body.Close()
		defer close(abort)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			var m struct{ Abort string }
			if json.Unmarshal(line, &m) == nil && m.Abort != "" {
				select {
				case abort <- m.Abort:
				default:
				}
			}
		}
	}()
	return l, nil
}

// LockState says who holds the repo's deploy lock.
func (c *Control) LockState(ctx context.Context, repo string) (LockState, error) {
	var st LockState
	resp, err := c.do(ctx, http.MethodGet, "/v1/lock?repo="+url.QueryEscape(repo), nil)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// Abort asks the daemon to abort the deploy holding the repo's lock and
// returns its holder. The daemon tells that deploy over its lease; it
// signals no process.
func (c *Control) Abort(ctx context.Context, repo string) (deploy.Holder, error) {
	var h deploy.Holder
	resp, err := c.do(ctx, http.MethodPost, "/v1/abort?repo="+url.QueryEscape(repo), nil)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// RecordDeployed has the daemon record what the fleet runs after a
// successful deploy, which must hold the repo's lock.
func (c *Control) RecordDeployed(ctx context.Context, repo, deployID string, id core.ReleaseID) error {
	q := url.Values{"repo": {repo}, "deploy": {deployID}, "release": {id.String()}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/deployed?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Signer returns a signer for the deploy key that asks the daemon: it
// signs a deploy's commands while this process holds the deploy's lock,
// and rosters. Each signature is asked for under ctx (cancel it when the
// daemon is lost) and at most signTimeout.
func (c *Control) Signer(ctx context.Context) (crypto.Signer, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/pubkey", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("daemon public key: %d bytes, %v", len(b), err)
	}
	return remoteSigner{c: c, ctx: ctx, pub: ed25519.PublicKey(b)}, nil
}

const signTimeout = 30 * time.Second

type remoteSigner struct {
	c   *Control
	ctx context.Context
	pub ed25519.PublicKey
}

func (s remoteSigner) Public() crypto.PublicKey { return s.pub }

// Sign asks the daemon to sign msg (pure ed25519: opts must be
// crypto.Hash(0)) and checks the signature.
func (s remoteSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, errors.New("sign: the deploy key signs messages, not digests")
	}
	ctx, cancel := context.WithTimeout(s.ctx, signTimeout)
	defer cancel()
	resp, err := s.c.do(ctx, http.MethodPost, "/v1/sign", bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sig, err := io.ReadAll(io.LimitReader(resp.Body, 128))
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, errors.New("sign: the daemon's signature does not verify")
	}
	return sig, nil
}

// AuditWriter sends a deploy's audit lines (one JSON object per Write) to
// the daemon, which appends them to the repo's audit log in the caller's
// name. Write only buffers, never waits on the daemon (the deploy's
// controller calls it); lines go out in order, in batches every
// auditFlushEvery and at Close, each send bounded by the writer's context
// and auditSendTimeout.
type AuditWriter struct {
	c            *Control
	ctx          context.Context
	repo, deploy string

	mu    sync.Mutex // guards buf, err, timer
	buf   bytes.Buffer
	err   error
	timer *time.Timer

	send sync.Mutex // one send at a time, so that batches stay in order
}

const (
	auditFlushEvery  = 250 * time.Millisecond
	auditSendTimeout = 10 * time.Second
)

// AuditWriter returns the audit log writer of a deploy that holds the
// repo's lock. Cancelling ctx (the daemon is lost) stops every send.
func (c *Control) AuditWriter(ctx context.Context, repo, deployID string) *AuditWriter {
	return &AuditWriter{c: c, ctx: ctx, repo: repo, deploy: deployID}
}

func (a *AuditWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Write(p)
	if a.timer == nil {
		a.timer = time.AfterFunc(auditFlushEvery, func() { a.flush() })
	}
	return len(p), nil
}

// flush sends what is buffered.
func (a *AuditWriter) flush() error {
	a.send.Lock()
	defer a.send.Unlock()
	a.mu.Lock()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	batch := bytes.Clone(a.buf.Bytes())
	a.buf.Reset()
	a.mu.Unlock()
	if len(batch) == 0 {
		return a.firstErr(nil)
	}
	q := url.Values{"repo": {a.repo}, "deploy": {a.deploy}}
	ctx, cancel := context.WithTimeout(a.ctx, auditSendTimeout)
	defer cancel()
	resp, err := a.c.do(ctx, http.MethodPost, "/v1/audit?"+q.Encode(), bytes.NewReader(batch))
	if err != nil {
		return a.firstErr(fmt.Errorf("audit log: %d bytes not written: %w", len(batch), err))
	}
	resp.Body.Close()
	return a.firstErr(nil)
}

func (a *AuditWriter) firstErr(err error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
	return a.err
}

// Close sends the rest and reports the first error.
func (a *AuditWriter) Close() error { return a.flush() }
