package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultDeployers is the Unix group whose members may use the control
// socket besides the daemon's own user and root: deploy, publish, abort,
// read the audit log.
const DefaultDeployers = "scatter-deploy"

// Caller is who is on the other end of a control connection, from the
// socket's peer credentials (SO_PEERCRED): the kernel's word, not the
// client's.
type Caller struct {
	UID, GID uint32
	PID      int32
	Name     string // the user name, or "uid N"
}

func (c *Caller) String() string { return c.Name }

type callerKey struct{}

// callerOf returns the caller of a control request; nil if the kernel did
// not say (never on a Unix socket).
func callerOf(r *http.Request) *Caller {
	c, _ := r.Context().Value(callerKey{}).(*Caller)
	return c
}

// peerCred is the control server's ConnContext: it stashes the caller.
func peerCred(ctx context.Context, conn net.Conn) context.Context {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	c := &Caller{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, Name: "uid " + strconv.Itoa(int(cred.Uid))}
	if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
		c.Name = u.Username
	}
	return context.WithValue(ctx, callerKey{}, c)
}

// access decides who may use the control socket: root, the daemon's own
// user, and members of the deployers group.
type access struct {
	group string
	gid   int // -1: the group does not exist; only root and the daemon's user
	self  int // the daemon's effective uid
}

// newAccess resolves the deployers group; a missing group leaves the
// socket to the daemon's user and root.
func newAccess(group string) access {
	if group == "" {
		group = DefaultDeployers
	}
	a := access{group: group, gid: -1, self: os.Geteuid()}
	if g, err := user.LookupGroup(group); err == nil {
		a.gid, _ = strconv.Atoi(g.Gid)
	}
	return a
}

// errNotDeployer is why a caller is refused.
var errNotDeployer = errors.New("not allowed to use this daemon")

func (a access) check(c *Caller) error {
	if c == nil {
		return fmt.Errorf("%w: the caller's credentials are unknown", errNotDeployer)
	}
	if c.UID == 0 || int(c.UID) == a.self {
		return nil
	}
	if a.gid >= 0 && (int(c.GID) == a.gid || inGroup(c, a.gid)) {
		return nil
	}
	if a.gid < 0 {
		return fmt.Errorf("%w: %s is neither root nor the daemon's user, and the deployers group %s does not exist", errNotDeployer, c.Name, a.group)
	}
	return fmt.Errorf("%w: %s is not in the deployers group %s", errNotDeployer, c.Name, a.group)
}

// inGroup reports whether the calling process has gid among its
// supplementary groups: what the kernel checked when it let it connect to
// the socket (mode 0660, group gid). /proc says what the process has now;
// the group database is the fallback.
func inGroup(c *Caller, gid int) bool {
	if f, err := os.Open("/proc/" + strconv.Itoa(int(c.PID)) + "/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
				for _, g := range strings.Fields(rest) {
					if g == strconv.Itoa(gid) {
						return true
					}
				}
				return false
			}
		}
	}
	u, err := user.LookupId(strconv.Itoa(int(c.UID)))
	if err != nil {
		return false
	}
	ids, _ := u.GroupIds()
	for _, g := range ids {
		if g == strconv.Itoa(gid) {
			return true
		}
	}
	return false
}

// share makes a file the daemon creates for deployers (the socket, the
// audit log) group-owned by the deployers group with mode; without the
// group, owner-only.
func (a access) share(path string, mode os.FileMode) error {
	if a.gid < 0 {
		return os.Chmod(path, mode&0o700)
	}
	if err := os.Lchown(path, -1, a.gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// guard refuses every request from a caller the access rules do not admit.
func (a access) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.check(callerOf(r)); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
