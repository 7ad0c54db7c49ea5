package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"scatter/orchestrate/rollout"
)

// run executes the CLI in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := newApp(&out, &errOut).RunContext(context.Background(), append([]string{"scatter"}, args...))
	if err != nil && err != errVerify {
		errOut.WriteString("scatter: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode(err)
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("scatter %v: exit %d\n%s", args, code, errOut)
	}
	return out
}

func TestCLIArtifactWorkflow(t *testing.T) {
	dir := t.TempDir()
	key, store, src := filepath.Join(dir, "deploy.key"), filepath.Join(dir, "store"), filepath.Join(dir, "src")
	mustRun(t, "keygen", "--out", key)
	mustRun(t, "generate", "--size", "2MiB", "--seed", "3", src)

	var b1 buildJSON
	out := mustRun(t, "build", "--store", store, "--key", key, "--repo", "mw", "--version", "1", "--message", "first", "--time", "1700000000", "--json", src)
	if err := json.Unmarshal([]byte(out), &b1); err != nil {
		t.Fatalf("build --json: %v: %q", err, out)
	}
	if b1.Files == 0 || b1.Bytes == 0 || b1.Chunks == 0 || b1.NewChunks != b1.Chunks || b1.NewBytes == 0 {
		t.Fatalf("first build figures: %+v", b1)
	}
	mustRun(t, "generate", "--mutate", "code", "--seed", "4", src)
	var b2 buildJSON
	out = mustRun(t, "build", "--store", store, "--key", key, "--repo", "mw", "--version", "2", "--json", src)
	json.Unmarshal([]byte(out), &b2)
	if b2.Parent != b1.Release || b2.NewChunks == 0 || b2.NewChunks >= b1.Chunks/4 {
		t.Fatalf("second build: %+v (first %+v)", b2, b1)
	}

	out = mustRun(t, "releases", "--store", store)
	if !strings.Contains(out, b1.Release[:12]) || !strings.Contains(out, "first") || strings.Index(out, b2.Release[:12]) > strings.Index(out, b1.Release[:12]) {
		t.Fatalf("releases (newest first):\n%s", out)
	}
	out = mustRun(t, "verify", "--store", store, "--pubkey", key+".pub", b2.Release[:10])
	if !strings.Contains(out, "ok") {
		t.Fatalf("verify: %s", out)
	}
	dest := filepath.Join(dir, "out", b1.Release)
	os.MkdirAll(filepath.Dir(dest), 0o755)
	mustRun(t, "materialize", "--store", store, "--pubkey", key+".pub", b1.Release, dest)
	dest2 := filepath.Join(dir, "out", "two")
	out = mustRun(t, "materialize", "--store", store, "--reuse", dest, b2.Release, dest2)
	if !strings.Contains(out, "linked") {
		t.Fatalf("materialize --reuse: %s", out)
	}
	if diff, err := exec.Command("diff", "-r", "--no-dereference", src, dest2).CombinedOutput(); err != nil {
		t.Fatalf("diff -r: %v\n%s", err, diff)
	}

	// A signature by another key is refused with the verification exit code.
	other := filepath.Join(dir, "other.key")
	mustRun(t, "keygen", "--out", other)
	_, errOut, code := run(t, "verify", "--store", store, "--pubkey", other+".pub", b2.Release)
	if code != exitVerify || !strings.Contains(errOut, "signed by another key") {
		t.Fatalf("wrong key: exit %d, %s", code, errOut)
	}
	// Usage errors exit 2.
	if _, _, code := run(t, "materialize", "--store", store, b1.Release); code != exitUsage {
		t.Fatalf("missing DEST: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := run(t, "build", "--bogus"); code != exitUsage {
		t.Fatalf("unknown flag: exit %d, want %d", code, exitUsage)
	}
	out = mustRun(t, "gc", "--store", store, "--keep", "1")
	if !strings.Contains(out, "removed 1 release(s)") {
		t.Fatalf("gc: %s", out)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "64KiB": 64 << 10, "1GiB": 1 << 30, "1.5MiB": 3 << 19, "2GB": 2e9} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "lots", "0", "64M", "1.5B"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): want an error", in)
		}
	}
}

// scatter seed refuses counts that cannot work before it starts anything.
func TestSeedRefusesBadCounts(t *testing.T) {
	for _, args := range [][]string{{"--bridges", "0"}, {"--keep", "0"}} {
		_, errOut, code := run(t, append([]string{"seed", "--data", t.TempDir(), "--pubkey", "none.pub"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "at least 1") {
			t.Errorf("seed %v: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
}

// Deploy outcomes map to their documented exit codes; a lost daemon is 6,
// never mistaken for an abort even though no rollout result is set.
func TestDeployExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{deployError{result: rollout.RolledBack}, exitDeployFailed},
		{deployError{result: rollout.RollbackFailed}, exitRollbackFailed},
		{deployError{result: rollout.Aborted}, exitInterrupted},
		{deployError{reason: "lost the local daemon", unknown: true}, exitOutcomeUnknown},
		{fmt.Errorf("wrapped: %w", deployError{unknown: true}), exitOutcomeUnknown},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if exitOutcomeUnknown != 6 {
		t.Fatal("exit code 6 is documented as outcome unknown")
	}
}

// `scatter seed` does not start without a gossip key, nor with a key file
// that the group or others can read; the message says how to fix it.
func TestSeedRefusesMissingOrReadableClusterKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "deploy.key")
	mustRun(t, "keygen", "--out", key)
	base := []string{"seed", "--data", filepath.Join(dir, "data"), "--pubkey", key + ".pub", "--bind", "127.0.0.221",
		"--gossip-port", "0", "--bt-port", "0", "--http-port", "0"}
	_, errOut, code := run(t, base...)
	if code != exitUsage || !strings.Contains(errOut, "--cluster-key is required") || !strings.Contains(errOut, "umask 077") {
		t.Fatalf("no key: exit %d\n%s", code, errOut)
	}
	ckey := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(ckey, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ckey, 0o644)
	_, errOut, code = run(t, append(base, "--cluster-key", ckey)...)
	if code == 0 || !strings.Contains(errOut, "chmod 600 "+ckey) {
		t.Fatalf("0644 key: exit %d\n%s", code, errOut)
	}
}
