package datadir

import (
	"testing"

	"scatter/artifact/core"
)

// The names are the ones data directories were laid out with before this
// package existed: a daemon upgraded in place must find its files.
func TestNamesAreTheExistingLayout(t *testing.T) {
	id := core.ReleaseID{0xab}
	d := Data("/var/lib/scatter")
	r := d.Repo("mw")
	h := id.String()
	for got, want := range map[string]string{
		d.ControlSocket():                  "/var/lib/scatter/control.sock",
		d.CommandsSeen():                   "/var/lib/scatter/commands.seen",
		r.Dir():                            "/var/lib/scatter/mw",
		r.Packs():                          "/var/lib/scatter/mw/packs",
		r.Pack("p1"):                       "/var/lib/scatter/mw/packs/p1",
		r.Manifests():                      "/var/lib/scatter/mw/manifests",
		r.Manifest(id):                     "/var/lib/scatter/mw/manifests/" + h,
		r.Tmp():                            "/var/lib/scatter/mw/tmp",
		r.StoreLock():                      "/var/lib/scatter/mw/lock",
		r.Torrents():                       "/var/lib/scatter/mw/torrents",
		r.Torrent(id, "full"):              "/var/lib/scatter/mw/torrents/" + h + ".full",
		r.Announcements():                  "/var/lib/scatter/mw/announcements",
		r.Announcement(id):                 "/var/lib/scatter/mw/announcements/" + h,
		r.Partial():                        "/var/lib/scatter/mw/partial",
		r.PartialFile(id, "delta", "done"): "/var/lib/scatter/mw/partial/" + h + ".delta.done",
		r.Releases():                       "/var/lib/scatter/mw/releases",
		r.Release(id):                      "/var/lib/scatter/mw/releases/" + h,
		ReleaseLinkTarget(id):              "releases/" + h,
		r.Link(CurrentLink):                "/var/lib/scatter/mw/current",
		r.Link(PreviousLink):               "/var/lib/scatter/mw/previous",
		r.LinkTemp(CurrentLink):            "/var/lib/scatter/mw/.current.new",
		r.PromotePending():                 "/var/lib/scatter/mw/.promote-pending",
		r.DeployStep():                     "/var/lib/scatter/mw/.deploy-step",
		r.Config():                         "/var/lib/scatter/mw/scatter.yaml",
		r.Deployed():                       "/var/lib/scatter/mw/deployed",
		r.Audit():                          "/var/lib/scatter/mw/audit.jsonl",
		r.DeployLock():                     "/var/lib/scatter/mw/deploy.lock",
		string(r.Data()):                   "/var/lib/scatter",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
