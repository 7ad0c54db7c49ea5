package swarm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
)

func TestOpenAnnouncementRefusesBadInput(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	a := &Announcement{Repo: "mw", Version: "1", Release: core.ReleaseID{1}, Full: InfoHash{2}}
	good, err := SignAnnouncement(a, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAnnouncement(good, pub); err != nil {
		t.Fatal(err)
	}
	foreign, _ := SignAnnouncement(a, other)
	tampered := bytes.Clone(good)
	tampered[len(tampered)-3] ^= 1
	noParent := *a
	noParent.Delta = InfoHash{3}
	halfDelta, _ := SignAnnouncement(&noParent, key)
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"wrong key":  {foreign, ErrUnsigned},
		"tampered":   {tampered, ErrUnsigned},
		"oversized":  {append(bytes.Clone(good), make([]byte, 2000)...), ErrBadAnnouncement},
		"garbage":    {[]byte("hello"), ErrBadAnnouncement},
		"empty":      {nil, ErrBadAnnouncement},
		"delta only": {halfDelta, ErrBadAnnouncement},
	}
	for name, c := range cases {
		if _, err := OpenAnnouncement(c.b, pub); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func FuzzAnnouncement(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	good, _ := SignAnnouncement(&Announcement{Repo: "mw", Release: core.ReleaseID{1}, Full: InfoHash{2}}, key)
	f.Add(good)
	f.Add([]byte(announceMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := OpenAnnouncement(b, pub)
		if err == nil && (a.Repo == "" || a.Release.IsZero()) {
			t.Fatal("accepted an announcement without repo or release")
		}
	})
}

// FuzzParseInfo: info bytes come from peers (checked by hash first, but the
// parser must not trust that).
func FuzzParseInfo(f *testing.F) {
	m := &artifact.Manifest{Chunks: []artifact.ChunkRef{{ID: core.ChunkIDOf([]byte("a")), Size: 1}}}
	m.Chunking.Max = 64 << 10
	l, err := NewLayout(core.ReleaseID{9}, m, nil, Full, func(core.ChunkID) (int64, error) { return 10, nil })
	if err != nil {
		f.Fatal(err)
	}
	info, _ := l.InfoBytes(func(core.ChunkID) ([]byte, error) { return make([]byte, 10), nil })
	f.Add(info)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseInfo(b, artifact.ManifestTable(core.ReleaseID{9}, m))
		if err != nil {
			return
		}
		var sum int64
		n := 0
		for s, err := range l.Chunks {
			if err != nil {
				t.Fatal(err)
			}
			n++
			if s.Off != sum || s.CSize <= 0 {
				t.Fatal("layout spans not contiguous")
			}
			sum += s.CSize
		}
		if sum != l.Length || n != l.Len() {
			t.Fatal("layout length mismatch")
		}
	})
}

// Property 7: a signed announcement whose manifest is signed by another
// key, and one for a release no peer can serve, fail with a clear error in
// status; the node keeps serving and stages the next good release.
func TestBadAnnouncementsDoNotStopTheNode(t *testing.T) {
	c := newCluster(t)
	origin := c.start("origin", 140, true, 0)
	host := c.start("h1", 141, false, 0)

	// A release built and signed with another key, announced with the
	// trusted one: the manifest does not verify.
	_, rogue, _ := ed25519.GenerateKey(rand.Reader)
	st, err := artifact.OpenStore(filepath.Join(c.dirs["origin"], "mw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := artifact.Build(context.Background(), st, genTree(t, 1<<20, false), rogue, artifact.BuildOptions{Repo: "mw", Version: "rogue"})
	if err != nil {
		t.Fatal(err)
	}
	ann, err := Prepare(c.dirs["origin"], st, res.Signed, c.key, time.Now()) // trusted key signs the announcement
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.announce(ann.Announcement)
	// A release nobody has.
	ghost, _ := SignAnnouncement(&Announcement{Repo: "mw", Version: "ghost", Release: core.ReleaseID{0xee}, Full: InfoHash{1}, Time: time.Now()}, c.key)
	c.announce(ghost)
	// Garbage is refused outright.
	if _, err := host.Announce([]byte("SCATANN1 not really")); err == nil {
		t.Fatal("garbage announcement accepted")
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		errs := map[string]string{}
		for _, r := range host.Status().Repos[0].Releases {
			errs[r.Version] = r.Error
		}
		if strings.Contains(errs["rogue"], "signed by another key") && strings.Contains(errs["ghost"], "no peer could serve") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("errors in status: %q", errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sm, _ := c.publish(genTree(t, 2<<20, false), "good")
	c.waitStaged(sm, []string{"h1"}, 30*time.Second)
	_ = origin
}

// The stripe endpoint takes offsets from any host: ranges that overflow
// or leave the torrent are refused.
func TestServeDataRefusesBadRanges(t *testing.T) {
	c := newCluster(t)
	c.extra = []Peer{{Name: "asker", HTTP: "127.0.0.161:9"}}
	client := clientFrom("127.0.0.161")
	origin := c.start("origin", 160, true, 0)
	sm, _ := c.publish(genTree(t, 1<<20, false), "1")
	deadline := time.Now().Add(10 * time.Second)
	for !origin.Staged("mw", sm.ID) {
		if time.Now().After(deadline) {
			t.Fatal("origin did not take the release")
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := "http://" + origin.HTTPAddr() + "/v1/repos/mw/releases/" + sm.ID.String() + "/data/full"
	for _, q := range []string{"?off=1&n=9223372036854775807", "?off=-1&n=10", "?off=0&n=0", "?off=99999999999&n=1", "?off=x&n=1"} {
		resp, err := client.Get(base + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
		}
	}
	resp, err := client.Get(base + "?off=0&n=100")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) != 100 {
		t.Fatalf("a good range: status %d, %d bytes", resp.StatusCode, len(b))
	}
}
