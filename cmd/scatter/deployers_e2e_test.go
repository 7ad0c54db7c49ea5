package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testUser is a Unix user the test created, to run scatter as.
type testUser struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

// newTestUser creates a system user (removed when the test ends), in
// group if it is not "".
func newTestUser(t *testing.T, name, group string) *testUser {
	t.Helper()
	args := []string{"-M", "-N", "-s", "/usr/sbin/nologin", "-d", "/nonexistent"}
	if group != "" {
		args = append(args, "-G", group)
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	tu := &testUser{name: name, uid: uint32(uid), gid: uint32(gid)}
	ids, _ := u.GroupIds()
	for _, g := range ids {
		n, _ := strconv.Atoi(g)
		tu.groups = append(tu.groups, uint32(n))
	}
	return tu
}

// run runs the scatter binary as the user, with a bare environment.
func (u *testUser) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/", "USER=not-" + u.name}
	return cmd
}

// openable reports whether the user can open path for reading.
func (u *testUser) canRead(t *testing.T, path string) bool {
	t.Helper()
	cmd := exec.Command("/bin/cat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	return cmd.Run() == nil
}

// openPath makes every directory from dir up to / traversable by others,
// so that created users can reach the test's files.
func openPath(t *testing.T, dir string) {
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, fi.Mode().Perm()|0o055)
		}
	}
}

// Least privilege on the deploy host, with real processes run as created
// users: the origin daemon (root) keeps the deploy key, which neither user
// can read. A member of the deployers group publishes and deploys, and the
// audit log names that user, not $USER; it can read the audit log, gets the
// holder's name when another user's deploy holds the lock, and aborts that
// deploy (the daemon tells it; nothing is signalled across users). A user
// outside the group can neither publish, deploy nor abort (the socket is
// 0660, and with the socket opened to all the daemon still refuses it by
// its peer credentials), nor open the lock file or the audit log.
func TestE2EDeployersGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create users")
	}
	suffix := strconv.Itoa(os.Getpid() % 100000)
	group := "sc3dep" + suffix
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	member := newTestUser(t, "sc3mem"+suffix, group)
	outsider := newTestUser(t, "sc3out"+suffix, "")

	c := newDeployCluster(t, 2, "--deployers", group)
	openPath(t, c.dir)
	openPath(t, filepath.Dir(c.bin))
	for _, u := range []*testUser{member, outsider} {
		if u.canRead(t, c.key) {
			t.Fatalf("%s can read the deploy key", u.name)
		}
	}
	sock := filepath.Join(c.origin.data, "control.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("control socket: %v %v, want mode 0660", fi.Mode(), err)
	}

	cfgFile := filepath.Join(c.dir, "scatter.yaml")
	os.WriteFile(cfgFile, []byte("repo: mw\ncanary: 1\nbatch: 1\nchecks: [health]\ntimeouts: {stage: 1m, action: 20s}\n"), 0o644)
	src := filepath.Join(c.dir, "src-1")
	runBin(t, c.bin, "generate", "--size", "1MiB", "--seed", "3", src)

	// Outside the group: nothing works, and it says why.
	for _, args := range [][]string{
		{"publish", "--data", c.origin.data, "--repo", "mw", "--version", "1", "--config", cfgFile, src},
		{"deploy", "--data", c.origin.data, "-m", "x", "mw"},
		{"abort", "--data", c.origin.data, "--wait", "0", "mw"},
		{"status", "--data", c.origin.data},
	} {
		out, err := outsider.command(c.bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("outsider: scatter %s: %v\n%s", args[0], err, out)
		}
	}

	// A member publishes, without the key.
	out, err := member.command(c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", "1",
		"--config", cfgFile, src).Output()
	if err != nil {
		t.Fatalf("member publish: %v\n%s", err, exitOutput(err))
	}
	v1 := strings.TrimSpace(string(out))
	c.waitStaged(v1)
	out, err = member.command(c.bin, "deploy", "--data", c.origin.data, "-m", "by a deployer", "mw").CombinedOutput()
	if err != nil {
		t.Fatalf("member deploy: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "by "+member.name) {
		t.Fatalf("deploy does not name its user:\n%s", out)
	}
	for _, name := range c.names {
		if c.current(name) != v1 {
			t.Fatalf("%s not on v1 after the member's deploy", name)
		}
	}
	if e := lastDeploy(c.audit())[0]; e.User != member.name || e.Message != "by a deployer" {
		t.Fatalf("audit start names %q (%q), want %s", e.User, e.Message, member.name)
	}
	audit := filepath.Join(c.origin.data, "mw", "audit.jsonl")
	lock := filepath.Join(c.origin.data, "mw", "deploy.lock")
	if !member.canRead(t, audit) {
		t.Fatal("a member cannot read the audit log")
	}
	if outsider.canRead(t, audit) || outsider.canRead(t, lock) || member.canRead(t, lock) {
		t.Fatal("the audit log or the deploy lock file opens for a user it should not")
	}

	// Root's slow deploy holds the lock: the member is told who holds it,
	// then aborts it.
	src2 := filepath.Join(c.dir, "src-2")
	runBin(t, c.bin, "generate", "--size", "1MiB", "--seed", "4", src2)
	v2 := strings.TrimSpace(runBin(t, c.bin, "publish", "--data", c.origin.data, "--repo", "mw", "--version", "2", src2))
	c.waitStaged(v2)
	for _, name := range c.names {
		os.WriteFile(filepath.Join(c.dir, name, "restart-sleep"), []byte("3"), 0o644)
	}
	d := c.deployCmd("-m", "slow one", "mw", "2")
	log := &syncBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(log.String(), "canary:") {
		if time.Now().After(deadline) {
			d.Process.Kill()
			t.Fatalf("root's deploy never reached the canary:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err = member.command(c.bin, "deploy", "--data", c.origin.data, "-m", "impatient", "mw").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deploy lock held by root") {
		t.Fatalf("second deploy: %v\n%s", err, out)
	}
	out, err = member.command(c.bin, "abort", "--data", c.origin.data, "mw").CombinedOutput()
	if err != nil {
		t.Fatalf("member abort: %v\n%s", err, out)
	}
	if code := exitStatus(d.Wait()); code != exitInterrupted {
		t.Fatalf("aborted deploy exited %d, want 130:\n%s", code, log)
	}
	if !strings.Contains(log.String(), "abort requested by "+member.name) {
		t.Fatalf("the deploy does not say who aborted it:\n%s", log)
	}

	// The socket opened to everyone: the daemon still refuses an outsider
	// by its peer credentials.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out, err = outsider.command(c.bin, "deploy", "--data", c.origin.data, "-m", "x", "mw").CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("%s is not in the deployers group %s", outsider.name, group)) {
		t.Fatalf("outsider on an open socket: %v\n%s", err, out)
	}
}

func exitOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
