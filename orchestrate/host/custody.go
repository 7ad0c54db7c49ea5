package host

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/orchestrate/command"
	"scatter/orchestrate/config"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/trust"
	"scatter/swarm"
)

// Key custody on the deploy host. The origin daemon holds the deploy key
// (Config.Key) and does, for the deployers who ask over its control socket,
// what needs the key or must not be left to them: it builds and announces
// releases, signs each deploy's commands, holds each repo's deploy lock for
// the deploy that asked, appends to the audit log in the caller's name,
// records what the fleet was deployed to, and installs a repo's config. A
// deployer and the hooks it runs use the key without ever reading it.
//
// Endpoints (besides status, engine, announce, command, acks, members):
//
//	POST /v1/publish?repo=&version=&message=   body: a tar stream; builds, announces, answers PublishResult
//	POST /v1/config?repo=                      body: scatter.yaml; installs it as the repo's config
//	POST /v1/lock?repo=&deploy=&message=       takes the deploy lock; the answer streams until the caller hangs up
//	GET  /v1/lock?repo=                        who holds the lock
//	POST /v1/abort?repo=                       asks the deploy holding the lock to abort
//	GET  /v1/pubkey                            the deploy public key
//	POST /v1/sign                              body: a message to sign; only a roster, or a command of the caller's own deploy
//	POST /v1/audit?repo=&deploy=               body: JSON lines, appended in the caller's name
//	POST /v1/deployed?repo=&deploy=&release=   records what the fleet runs after a successful deploy

// session is a deploy holding its repo's lock through the daemon.
type session struct {
	repo   string
	holder deploy.Holder
	caller *Caller
	abort  chan string // receives who asked, once
	once   sync.Once
}

func (s *session) requestAbort(by string) {
	s.once.Do(func() { s.abort <- by })
}

// PublishResult is what the daemon answers a publish with: the build's
// figures and S, the full torrent's bytes.
type PublishResult struct {
	Release   core.ReleaseID `json:"release"`
	Repo      string         `json:"repo"`
	Version   string         `json:"version"`
	Parent    core.ReleaseID `json:"parent,omitzero"`
	Files     int            `json:"files"`
	Bytes     int64          `json:"bytes"`
	Chunks    int            `json:"chunks"`
	NewChunks int            `json:"new_chunks"`
	NewBytes  int64          `json:"new_bytes"`
	Seconds   float64        `json:"seconds"`
	Size      int64          `json:"size"`
}

// LockState says whether a repo's deploy lock is held, and by whom.
type LockState struct {
	Held   bool          `json:"held"`
	Holder deploy.Holder `json:"holder"`
}

func (h *Host) custodyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/pubkey", func(w http.ResponseWriter, r *http.Request) {
		w.Write(h.cfg.PubKey)
	})
	mux.HandleFunc("POST /v1/publish", h.servePublish)
	mux.HandleFunc("POST /v1/config", h.serveConfig)
	mux.HandleFunc("POST /v1/lock", h.serveLock)
	mux.HandleFunc("GET /v1/lock", func(w http.ResponseWriter, r *http.Request) {
		repo, ok := repoParam(w, r)
		if !ok {
			return
		}
		st := LockState{}
		h.mu.Lock()
		if s := h.sessions[repo]; s != nil {
			st = LockState{Held: true, Holder: s.holder}
		}
		h.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /v1/abort", func(w http.ResponseWriter, r *http.Request) {
		repo, ok := repoParam(w, r)
		if !ok {
			return
		}
		h.mu.Lock()
		s := h.sessions[repo]
		h.mu.Unlock()
		if s == nil {
			http.Error(w, "no deploy of "+repo+" is running", http.StatusNotFound)
			return
		}
		by := callerOf(r).Name
		h.log.Warn("deploy abort requested", "repo", repo, "deploy", s.holder.Deploy, "holder", s.holder.User, "by", by)
		s.requestAbort(by)
		json.NewEncoder(w).Encode(s.holder)
	})
	mux.HandleFunc("POST /v1/sign", h.serveSign)
	mux.HandleFunc("POST /v1/audit", h.serveAudit)
	mux.HandleFunc("POST /v1/deployed", func(w http.ResponseWriter, r *http.Request) {
		s, ok := h.ownSession(w, r)
		if !ok {
			return
		}
		id, err := core.ParseReleaseID(r.URL.Query().Get("release"))
		if err == nil {
			err = deploy.RecordDeployed(datadir.Data(h.cfg.DataDir).Repo(s.repo), id, s.holder.Deploy)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func repoParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	repo := r.URL.Query().Get("repo")
	if err := artifact.ValidName("repo", repo); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return "", false
	}
	return repo, true
}

// ownSession is the session of the repo and deploy a request names, if
// the caller holds it.
func (h *Host) ownSession(w http.ResponseWriter, r *http.Request) (*session, bool) {
	repo, ok := repoParam(w, r)
	if !ok {
		return nil, false
	}
	s, err := h.heldBy(repo, r.URL.Query().Get("deploy"), callerOf(r))
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return nil, false
	}
	return s, true
}

// heldBy returns the session of repo if it is deploy's and c holds it.
func (h *Host) heldBy(repo, deployID string, c *Caller) (*session, error) {
	h.mu.Lock()
	s := h.sessions[repo]
	h.mu.Unlock()
	if s == nil || s.holder.Deploy != deployID || s.caller.UID != c.UID {
		return nil, fmt.Errorf("%s does not hold the deploy lock of %s for deploy %s", c.Name, repo, deployID)
	}
	return s, nil
}

func (h *Host) needKey(w http.ResponseWriter) (ed25519.PrivateKey, bool) {
	if h.cfg.Key == nil {
		http.Error(w, "this daemon holds no deploy key: start the origin with `scatter seed --origin --key FILE` (or key: in seed.yaml)", http.StatusPreconditionFailed)
		return nil, false
	}
	return h.cfg.Key, true
}

// servePublish builds the tar stream in the body into the repo's store,
// lays out its torrents, signs its announcement and announces it, as the
// daemon's user: the deployer's process never holds the key, and its
// prepare hooks ran before the first byte arrived here.
func (h *Host) servePublish(w http.ResponseWriter, r *http.Request) {
	key, ok := h.needKey(w)
	if !ok {
		return
	}
	repo, ok := repoParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	c := callerOf(r)
	hostname, _ := os.Hostname()
	bo := artifact.BuildOptions{Repo: repo, Version: q.Get("version"), Message: q.Get("message"),
		Builder: c.Name + "@" + hostname, Log: h.log}
	if err := artifact.ValidName("version", bo.Version); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st, err := artifact.OpenStore(datadir.Data(h.cfg.DataDir).Repo(repo).Dir(), h.log)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer st.Close()
	res, err := artifact.BuildStream(r.Context(), st, r.Body, "publish "+repo+" "+bo.Version, key, bo)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p, err := swarm.Prepare(h.cfg.DataDir, st, res.Signed, key, time.Now())
	if err == nil {
		err = h.Publish(p.Announcement)
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("prepare %s: %v", bo.Version, err), http.StatusInternalServerError)
		return
	}
	m := res.Signed.Manifest
	h.log.Info("published", "repo", repo, "version", bo.Version, "release", res.Signed.ID.Short(), "by", c.Name)
	json.NewEncoder(w).Encode(PublishResult{
		Release: res.Signed.ID, Repo: m.Repo, Version: m.Version, Parent: m.Parent, Files: res.Files,
		Bytes: res.Bytes, Chunks: res.Chunks, NewChunks: res.NewChunks, NewBytes: res.NewBytes,
		Seconds: res.Duration.Seconds(), Size: p.Size,
	})
}

// serveConfig installs a repo's scatter.yaml, checked first.
func (h *Host) serveConfig(w http.ResponseWriter, r *http.Request) {
	repo, ok := repoParam(w, r)
	if !ok {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d, err := config.ParseDeploy("scatter.yaml", b)
	if err == nil && d.Repo != repo {
		err = fmt.Errorf("scatter.yaml is for repo %q, not %q", d.Repo, repo)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	dir := datadir.Data(h.cfg.DataDir).Repo(repo)
	if err := os.MkdirAll(dir.Dir(), 0o755); err == nil {
		err = writeAtomic(dir.Config(), b, 0o644)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.log.Warn("installed deploy config", "repo", repo, "by", callerOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path+".tmp", b, mode); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// serveLock takes the repo's deploy lock for the caller and holds it for
// as long as the caller keeps the request open: a deploy that dies, or
// hangs up, frees it. The answer is a stream of JSON lines: first
// {"user": NAME} (who the daemon says the caller is), then {"abort": BY}
// if someone aborts the deploy.
func (h *Host) serveLock(w http.ResponseWriter, r *http.Request) {
	repo, ok := repoParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	c := callerOf(r)
	hostname, _ := os.Hostname()
	holder := deploy.Holder{User: c.Name, Host: hostname, PID: int(c.PID), Deploy: q.Get("deploy"),
		Message: q.Get("message"), Since: time.Now().UTC()}
	if holder.Deploy == "" || len(holder.Deploy) > 64 {
		http.Error(w, "deploy= is required (at most 64 bytes)", http.StatusBadRequest)
		return
	}
	dir := datadir.Data(h.cfg.DataDir).Repo(repo)
	if err := os.MkdirAll(dir.Dir(), 0o755); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	lock, err := deploy.Acquire(dir.DeployLock(), holder)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, deploy.ErrLocked) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	s := &session{repo: repo, holder: holder, caller: c, abort: make(chan string, 1)}
	h.mu.Lock()
	h.sessions[repo] = s
	h.mu.Unlock()
	h.log.Info("deploy lock taken", "repo", repo, "deploy", holder.Deploy, "user", c.Name, "pid", c.PID)
	defer func() {
		h.mu.Lock()
		if h.sessions[repo] == s {
			delete(h.sessions, repo)
		}
		h.mu.Unlock()
		lock.Release()
		h.log.Info("deploy lock released", "repo", repo, "deploy", holder.Deploy, "user", c.Name)
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	enc.Encode(map[string]string{"user": c.Name})
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.stop:
			return
		case by := <-s.abort:
			enc.Encode(map[string]string{"abort": by})
			flush()
		}
	}
}

// Signing contexts the daemon signs for, each with its check: a command of
// the deploy holding its repo's lock, and a roster (`scatter hosts`). A message
// must start with one; the rest is what the check accepts. Nothing else is
// ever signed: the daemon is not a signing oracle.
func (h *Host) checkSigning(msg []byte, c *Caller) (string, error) {
	if body, ok := bytes.CutPrefix(msg, []byte(command.SignContext)); ok {
		cmd, err := command.ParseSigningRequest(body)
		if err != nil {
			return "", err
		}
		if _, err := h.heldBy(cmd.Repo, cmd.Deploy, c); err != nil {
			return "", fmt.Errorf("sign command: %w", err)
		}
		return fmt.Sprintf("command %s seq %d %s %s", cmd.Deploy, cmd.Seq, cmd.Kind, cmd.Repo), nil
	}
	if body, ok := bytes.CutPrefix(msg, []byte(trust.RosterContext)); ok {
		r, err := trust.ParseRosterRequest(body)
		if err != nil {
			return "", err
		}
		h.log.Warn("signing a roster", "version", r.Version, "hosts", len(r.Hosts), "user", c.Name)
		return fmt.Sprintf("roster v%d", r.Version), nil
	}
	return "", errors.New("sign: not a message this daemon signs (only rosters, and the commands of a deploy holding its lock)")
}

func (h *Host) serveSign(w http.ResponseWriter, r *http.Request) {
	key, ok := h.needKey(w)
	if !ok {
		return
	}
	msg, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c := callerOf(r)
	what, err := h.checkSigning(msg, c)
	if err != nil {
		h.log.Warn("refused to sign", "user", c.Name, "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	h.log.Debug("signed", "what", what, "user", c.Name)
	w.Write(ed25519.Sign(key, msg))
}

// serveAudit appends the deploy's events to the repo's audit log, each
// with the caller's user name as the daemon knows it. The log is the
// daemon's: group-readable by deployers, by no one else.
func (h *Host) serveAudit(w http.ResponseWriter, r *http.Request) {
	s, ok := h.ownSession(w, r)
	if !ok {
		return
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(io.LimitReader(r.Body, 64<<20))
	sc.Buffer(nil, 32<<20)
	for sc.Scan() {
		var ev map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			http.Error(w, "audit: "+err.Error(), http.StatusBadRequest)
			return
		}
		ev["user"], _ = json.Marshal(s.caller.Name)
		b, _ := json.Marshal(ev)
		out.Write(append(b, '\n'))
	}
	if err := sc.Err(); err != nil {
		http.Error(w, "audit: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.appendAudit(s.repo, out.Bytes()); err != nil {
		h.log.Error("audit log", "repo", s.repo, "err", err)
		http.Error(w, "audit: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Host) appendAudit(repo string, b []byte) error {
	path := datadir.Data(h.cfg.DataDir).Repo(repo).Audit()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if err := h.access.share(path, 0o640); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
