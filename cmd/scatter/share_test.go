package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// `scatter seed --nice 7 --io-class idle --procs 1`: every thread of the
// daemon runs at niceness 7 in the idle I/O class, those the Go runtime
// started after the setting too, and its Go code on one core at a time.
func TestSeedShare(t *testing.T) {
	bin := scatterBinary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy.key")
	runBin(t, bin, "keygen", "--out", key)
	d := startDaemon(t, bin, "--config", "", "--data", filepath.Join(dir, "h"), "--pubkey", key+".pub", "--name", "h",
		"--bind", "127.0.89.9", "--gossip-port", "0", "--bt-port", "0", "--http-port", "0", "--insecure-no-encryption",
		"--nice", "7", "--io-class", "idle", "--procs", "1", "--admin-addr", "127.0.89.9:0")
	m := scrapeMetrics(t, "http://"+adminAddr(t, d)+"/metrics")
	if !strings.Contains(m, "\ngo_sched_gomaxprocs_threads 1\n") {
		t.Errorf("--procs 1: metrics say %q, want go_sched_gomaxprocs_threads 1", grepLines(m, "go_sched_gomaxprocs"))
	}
	pid := d.cmd.Process.Pid
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Fatalf("%d threads: want the runtime's several", len(tasks))
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the command name's ")": state is field 3, nice 19.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if f[16] != "7" {
			t.Errorf("thread %s: nice %s, want 7", task.Name(), f[16])
		}
		tid, _ := strconv.Atoi(task.Name())
		prio, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, 1, uintptr(tid), 0)
		if e != 0 {
			t.Fatal(e)
		}
		if class := prio >> 13; class != 3 {
			t.Errorf("thread %s: I/O class %d, want 3 (idle)", task.Name(), class)
		}
	}
	// Each refusal names the bad value, so that no other usage error of
	// these command lines passes for it.
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"seed", "--nice", "20"}, "nice 20"},
		{[]string{"seed", "--nice", "-1"}, "nice -1"},
		{[]string{"seed", "--io-class", "realtime"}, `"realtime"`},
		{[]string{"seed", "--procs", "-1"}, "--procs -1"},
	} {
		args := append(c.args, "--config", "", "--data", filepath.Join(dir, "x"), "--pubkey", key+".pub", "--insecure-no-encryption")
		if _, errOut, code := run(t, args...); code != 2 || !strings.Contains(errOut, c.says) {
			t.Errorf("%v: exit %d, %q: want 2 and an error naming %s", args, code, errOut, c.says)
		}
	}
}
