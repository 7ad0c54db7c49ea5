package fleet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"scatter/artifact/datadir"
	"scatter/orchestrate/config"
)

const installed = `repo: mw
checks: [health]
hooks:
  prepare:
    - [/bin/sh, -c, 'echo ok > PREPARED']
`

// A scatter.yaml inside the source is never obeyed: with an installed
// config, that one is used and the source's is reported; with none, no
// hook runs at all; only a file the operator names replaces them.
func TestPublishConfigIgnoresSource(t *testing.T) {
	dir := t.TempDir()
	data := datadir.Data(filepath.Join(dir, "data"))
	os.MkdirAll(data.Repo("mw").Dir(), 0o755)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	evil := "repo: mw\ncanary: 0\nfailure_limit: 100%\nchecks: []\nhooks:\n  prepare:\n    - [/bin/sh, -c, 'cp deploy.key /tmp/stolen']\n"
	os.WriteFile(filepath.Join(src, "scatter.yaml"), []byte(evil), 0o644)
	o := PublishOptions{Data: data, Src: src, Repo: "mw", Version: "1"}

	pc, err := publishConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if pc.cfg != nil || !strings.Contains(pc.ignored, "was not used") || !strings.Contains(pc.ignored, "no installed config") {
		t.Fatalf("no installed config: used %v, report %q", pc.cfg, pc.ignored)
	}

	os.WriteFile(data.Repo("mw").Config(), []byte(installed), 0o644)
	pc, err = publishConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if pc.cfg == nil || !slices.Equal(pc.cfg.Checks, []string{"health"}) || len(pc.cfg.Prepare) != 1 ||
		!strings.Contains(pc.cfg.Prepare[0][2], "PREPARED") {
		t.Fatalf("installed config not used: %+v", pc.cfg)
	}
	if !strings.Contains(pc.ignored, "differs from the config in use") {
		t.Fatalf("the differing source config is not reported: %q", pc.ignored)
	}

	// The same bytes as installed: nothing to report.
	os.WriteFile(filepath.Join(src, "scatter.yaml"), []byte(installed), 0o644)
	if pc, _ = publishConfig(o); pc.ignored != "" {
		t.Fatalf("identical source config reported: %q", pc.ignored)
	}

	// Named explicitly: that file is used.
	os.WriteFile(filepath.Join(src, "scatter.yaml"), []byte(evil), 0o644)
	o.ConfigFile = filepath.Join(src, "scatter.yaml")
	if pc, _ = publishConfig(o); pc.cfg == nil || len(pc.cfg.Checks) != 0 || pc.ignored != "" {
		t.Fatalf("explicit config: %+v %q", pc.cfg, pc.ignored)
	}
}

// Prepare hooks see only the minimal environment, whatever the caller's.
func TestPrepareHookEnvironment(t *testing.T) {
	src := t.TempDir()
	t.Setenv("SECRET_TOKEN", "hunter2")
	t.Setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
	d := mustDeploy(t, "repo: mw\nhooks:\n  prepare:\n    - [/bin/sh, -c, 'env > ENV']\n")
	var log bytes.Buffer
	if err := runPrepare(context.Background(), d, PublishOptions{Src: src, Repo: "mw", Version: "7"}, &log); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "ENV"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, _, _ := strings.Cut(l, "=")
		names = append(names, k)
	}
	slices.Sort(names)
	// The shell adds PWD (and SHLVL, _ on some shells) of its own.
	allowed := []string{"HOME", "LANG", "LOGNAME", "PATH", "PWD", "SCATTER_REPO", "SCATTER_SRC", "SCATTER_VERSION", "SHLVL", "USER", "_"}
	for _, n := range names {
		if !slices.Contains(allowed, n) {
			t.Errorf("hook environment has %s:\n%s", n, b)
		}
	}
	if !strings.Contains(string(b), "SCATTER_VERSION=7") || !strings.Contains(string(b), "PATH="+HookPath) {
		t.Errorf("hook environment lacks the scatter variables:\n%s", b)
	}
}

func mustDeploy(t *testing.T, y string) *config.Deploy {
	t.Helper()
	d, err := config.ParseDeploy("test", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
