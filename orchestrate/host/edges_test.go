package host_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scatter/orchestrate/host"
	"scatter/orchestrate/host/hosttest"
	"scatter/orchestrate/membership"
)

// writeKeys writes a cluster key file with the given keys, mode 0600.
func writeKeys(t *testing.T, path string, keys ...[]byte) {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, base64.StdEncoding.EncodeToString(k))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A host does not start without a gossip key, nor with a key file that
// the group or others can read; the error says how to fix it.
func TestHostRefusesMissingOrReadableKey(t *testing.T) {
	c := hosttest.New(t)
	cfg := host.Config{DataDir: t.TempDir(), PubKey: c.Key.Public().(ed25519.PublicKey), BindAddr: "127.0.0.201"}
	if _, err := host.Start(context.Background(), cfg); !errors.Is(err, host.ErrNoClusterKey) {
		t.Fatalf("no key: %v, want ErrNoClusterKey", err)
	}
	file := filepath.Join(t.TempDir(), "cluster.key")
	writeKeys(t, file, c.CKey)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		os.Chmod(file, mode)
		cfg.ClusterKeyFile = file
		_, err := host.Start(context.Background(), cfg)
		if !errors.Is(err, membership.ErrKeyFileMode) || !strings.Contains(err.Error(), "chmod 600 "+file) {
			t.Fatalf("mode %04o: %v, want a refusal naming the fix", mode, err)
		}
	}
}

// A gossip key rotates on running hosts through their key files and
// ReloadClusterKey, in the three rounds of docs/operations.md; every host
// stays a member throughout, and a host that still has only the old key
// afterwards cannot join.
func TestClusterKeyRotation(t *testing.T) {
	c := hosttest.New(t)
	dir := t.TempDir()
	oldKey, newKey := c.CKey, []byte("0123456789abcdef0123456789abcdef")
	files := map[string]string{}
	c.Configure = func(cfg *host.Config) {
		files[cfg.Name] = filepath.Join(dir, cfg.Name+".key")
		writeKeys(t, files[cfg.Name], oldKey)
		cfg.ClusterKey, cfg.ClusterKeyFile = nil, files[cfg.Name]
	}
	names := []string{"origin", "h1", "h2"}
	for i, name := range names {
		c.Start(name, 205+i, name == "origin")
	}
	allMembers := func() bool {
		for _, h := range c.Hosts {
			if len(h.Members()) != len(names) {
				return false
			}
		}
		return true
	}
	wait := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !allMembers() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not every host sees every host", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("before")
	for _, round := range []struct {
		name string
		keys [][]byte
	}{
		{"install the new key", [][]byte{oldKey, newKey}},
		{"switch to the new key", [][]byte{newKey, oldKey}},
		{"remove the old key", [][]byte{newKey}},
	} {
		for _, name := range names {
			writeKeys(t, files[name], round.keys...)
			n, err := c.Hosts[name].ReloadClusterKey()
			if err != nil || n != len(round.keys) {
				t.Fatalf("%s on %s: %d keys, %v", round.name, name, n, err)
			}
			if !allMembers() {
				t.Fatalf("%s: a host dropped out after %s reloaded", round.name, name)
			}
		}
		// Past a failure detection time: a member that could not be
		// reached would be gone by now.
		time.Sleep(3 * time.Second)
		if !allMembers() {
			t.Fatalf("%s: a host dropped out", round.name)
		}
	}
	c.Configure = func(cfg *host.Config) {
		files[cfg.Name] = filepath.Join(dir, cfg.Name+".key")
		writeKeys(t, files[cfg.Name], oldKey)
		cfg.ClusterKey, cfg.ClusterKeyFile = nil, files[cfg.Name]
	}
	stale := c.Start("stale", 209, false)
	time.Sleep(time.Second)
	if n := len(stale.Members()); n != 1 {
		t.Fatalf("a host with only the old key sees %d members", n)
	}
}

// A pending host — in gossip with the cluster key, not on the roster —
// gets nothing from an enrolled host's data plane: its requests for
// status, the tracker, a manifest, a torrent and stripe data are closed
// when accepted, and so is its peer-wire connection. Once enrolled, the
// same requests are answered.
func TestPendingHostGetsNothing(t *testing.T) {
	c := newTestCluster(t)
	origin := c.start("origin", 211, true)
	h1 := c.start("h1", 212, false)
	c.StartPending("newbie", 213)
	c.WaitMembers(3, 30*time.Second)
	sm := c.publish(genTree(t, 1<<20, false), "1")
	c.waitFor("h1 stages the release", 60*time.Second, c.allStaged(sm.ID, "h1"))
	const from = "127.0.0.213"
	base := "/v1/repos/mw/releases/" + sm.ID.String()
	paths := []string{"/v1/status", base + "/manifest", base + "/torrent/full", base + "/data/full?off=0&n=100",
		"/announce?info_hash=" + strings.Repeat("%00", 20)}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	get := func(h *host.Host, p string) (int, error) {
		resp, err := client.Get("http://" + h.Swarm().HTTPAddr() + p)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, h := range []*host.Host{origin, h1} {
		for _, p := range paths {
			if code, err := get(h, p); err == nil {
				t.Errorf("pending host got %s from %s: %d", p, h.Name(), code)
			}
		}
		conn, err := d.Dial("tcp", h.Swarm().BTAddr())
		if err == nil {
			conn.Write(append(append([]byte{19}, "BitTorrent protocol"...), make([]byte, 48)...))
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			if b, _ := io.ReadAll(conn); len(b) > 0 {
				t.Errorf("pending host got %d bytes from %s's peer wire", len(b), h.Name())
			}
			conn.Close()
		}
	}
	c.Enroll("newbie")
	c.waitFor("the enrolled newbie gets status", 20*time.Second, func() bool {
		code, err := get(h1, "/v1/status")
		return err == nil && code == http.StatusOK
	})
}
