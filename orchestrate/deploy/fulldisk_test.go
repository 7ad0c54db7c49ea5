package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
	"scatter/orchestrate/deploy"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/rollout"
)

// fillDisk writes to a file in dir until the file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	if f != nil {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
		f.Close()
	}
	// Whatever is left in partial blocks: small files until none fits.
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("filler%d", i)), []byte("x"), 0o644); err != nil {
			break
		}
	}
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	t.Logf("disk full: %d blocks free", st.Bavail)
}

// A target whose data directory is on a full disk still rolls back to a
// release it retains: the rollback is what frees the operator to clean up.
// Needs root to mount a small tmpfs.
func TestFullDiskRollback(t *testing.T) {
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", disk).Run() })
	c := &cluster{Cluster: hosttest.New(t), t: t, names: []string{"mw01"}}
	c.Dirs["mw01"] = filepath.Join(disk, "mw01")
	c.Repos = func(_, dir string) map[string]config.Repo {
		sh := func(s string) config.Action {
			return config.Action{Command: []string{"/bin/sh", "-c", s}, Timeout: 10 * time.Second}
		}
		// The actions write nothing: what fails on a full disk here is
		// scatter's, not the application's.
		return map[string]config.Repo{"mw": {Actions: map[string]config.Action{
			"restart": sh("true"),
			"health":  sh(`test -e "$SCATTER_RELEASE_DIR/VERSION"`),
		}}}
	}
	c.Start("origin", 220, true)
	c.Start("mw01", 221, false)
	c.WaitMembers(2, 30*time.Second)
	r1 := c.publish("1")
	if res := c.deploy(context.Background(), r1, func(o *deploy.Options) { o.Canary = 1 }); res.sum.Result != rollout.Success {
		t.Fatalf("deploy r1: %s", res.sum.Reason)
	}
	r2 := c.publish("2")
	if res := c.deploy(context.Background(), r2, func(o *deploy.Options) { o.Canary = 1 }); res.sum.Result != rollout.Success {
		t.Fatalf("deploy r2: %s", res.sum.Reason)
	}
	if c.current("mw01") != r2 {
		t.Fatal("mw01 not on r2")
	}
	fillDisk(t, disk)
	res := c.deploy(context.Background(), r1, func(o *deploy.Options) {
		o.Canary, o.Rollback, o.Message = 1, true, "rollback on a full disk"
	})
	if res.sum.Result != rollout.Success {
		t.Fatalf("rollback to r1 on a full disk: %s: %s %+v", res.sum.Outcome, res.sum.Reason, res.sum.Failures)
	}
	if c.current("mw01") != r1 {
		t.Fatalf("mw01 on %s after the rollback, want r1", c.current("mw01").Short())
	}
	if prev, _ := os.Readlink(datadir.Data(c.Dirs["mw01"]).Repo("mw").Link(datadir.PreviousLink)); filepath.Base(prev) != r2.String() {
		t.Logf("previous link: %q (not recorded on the full disk)", prev)
	}
}
