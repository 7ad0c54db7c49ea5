package host_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"scatter/artifact/core"
	"scatter/orchestrate/host"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/version"
)

// scrape reads url and parses it with Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the sample of family name whose labels include want; ok is
// false when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func getStatus(t *testing.T, url string) (int, host.Health) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hl host.Health
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.NewDecoder(resp.Body).Decode(&hl); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode, hl
}

// The admin listener of a real host: its byte counters are what status
// reports after a real fetch, releases are counted by state, and /healthz
// and /readyz answer.
func TestMetricsMatchStatus(t *testing.T) {
	c := newTestCluster(t)
	regs := map[string]*prometheus.Registry{}
	c.Configure = func(cfg *host.Config) {
		regs[cfg.Name] = prometheus.NewRegistry()
		cfg.Metrics = regs[cfg.Name]
		if cfg.Name == "h2" {
			cfg.Build = "v9.9.9-test" // a fleet with one newer daemon
		}
	}
	c.start("origin", 120, true)
	names := []string{"h0", "h1", "h2"}
	for i, n := range names {
		c.start(n, 121+i, false)
	}
	c.WaitMembers(len(names)+1, 20*time.Second)
	h0 := c.Hosts["h0"]
	admin, err := h0.ServeAdmin("127.0.0.121:0", regs["h0"])
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + admin

	if code, _ := getStatus(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	c.waitFor("h0 ready", 10*time.Second, func() bool { code, _ := getStatus(t, base+"/readyz"); return code == http.StatusOK })

	sm := c.publish(genTree(t, 4<<20, false), "1")
	c.waitFor("release 1 staged everywhere", 60*time.Second, c.allStaged(sm.ID, names...))

	// Status shows each member's build, from gossip meta.
	builds := map[string]string{}
	for _, m := range h0.ClusterStatus(context.Background()).Members {
		builds[m.Name] = m.Build
	}
	if own := version.Get().Short(); builds["h0"] != own || builds["origin"] != own || builds["h2"] != "v9.9.9-test" {
		t.Errorf("builds in status: %v; want %s but h2's v9.9.9-test", builds, own)
	}

	fams := scrape(t, base+"/metrics")
	st := h0.Swarm().Status()
	for _, m := range []struct {
		name string
		want int64
	}{
		{"scatter_received_from_origin_bytes_total", st.ReceivedFromOrigin},
		{"scatter_received_from_peers_bytes_total", st.ReceivedFromPeers},
		{"scatter_metadata_sent_bytes_total", st.UploadedMeta},
	} {
		got, ok := value(fams, m.name)
		if !ok || int64(got) != m.want {
			t.Errorf("%s = %v (present %v), status says %d", m.name, got, ok, m.want)
		}
	}
	if st.ReceivedFromOrigin+st.ReceivedFromPeers == 0 {
		t.Fatalf("h0 received nothing: %+v", st)
	}
	if got, _ := value(fams, "scatter_releases", "repo", "mw", "state", "staged"); got != 1 {
		t.Errorf("scatter_releases{repo=mw,state=staged} = %v, want 1", got)
	}
	if got, _ := value(fams, "scatter_gossip_members", "state", "alive"); got != 4 {
		t.Errorf("scatter_gossip_members{state=alive} = %v, want 4", got)
	}
	if got, ok := value(fams, "scatter_staging_seconds", "repo", "mw"); !ok || got <= 0 {
		t.Errorf("scatter_staging_seconds{repo=mw} = %v (present %v)", got, ok)
	}
	if got, _ := value(fams, "scatter_ready"); got != 1 {
		t.Errorf("scatter_ready = %v", got)
	}
	if _, ok := value(fams, "scatter_stalls_total", "reason", "no_peers"); !ok {
		t.Errorf("scatter_stalls_total{reason=no_peers} missing: every reason is exported, 0 until it happens")
	}
	if _, ok := value(fams, "go_goroutines"); ok {
		t.Errorf("the host registers only its own collectors; the runtime's are the caller's choice")
	}
	// No label names a host or a release.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "host" || l.GetName() == "release" || l.GetValue() == sm.ID.String() {
					t.Errorf("%s has label %s=%s", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// The deploy host's counters move with the reports `scatter deploy`
	// sends; "batch 2" counts as a batch.
	h0.ReportDeploy(host.DeployReport{Repo: "mw", Phase: "batch 2"})
	if got, _ := value(scrape(t, base+"/metrics"), "scatter_deploy_running", "repo", "mw"); got != 1 {
		t.Errorf("scatter_deploy_running = %v during a deploy", got)
	}
	h0.ReportDeploy(host.DeployReport{Repo: "mw", Outcome: "rolled back", Phases: []host.PhaseSpan{{Name: "batch 2", Seconds: 1.5}}})
	fams = scrape(t, base+"/metrics")
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"scatter_deploy_phases_total", []string{"repo", "mw", "phase", "batch"}, 1},
		{"scatter_deploy_phase_seconds_total", []string{"repo", "mw", "phase", "batch"}, 1.5},
		{"scatter_deploys_total", []string{"repo", "mw", "outcome", "rolled_back"}, 1},
	} {
		if got, _ := value(fams, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	if _, ok := value(fams, "scatter_deploy_running", "repo", "mw"); ok {
		t.Errorf("scatter_deploy_running still set after the deploy ended")
	}
}

// A host told to join a member that is not there is alive but not ready,
// and /readyz says why.
func TestReadyzNotJoined(t *testing.T) {
	c := newTestCluster(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := host.Start(ctx, host.Config{
		Name: "lonely", DataDir: dir, PubKey: c.Key.Public().(ed25519.PublicKey), BindAddr: "127.0.0.130",
		Join: []string{"127.0.0.131:1"}, Label: "test", ClusterKey: c.CKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	admin, err := h.ServeAdmin("127.0.0.130:0", prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := getStatus(t, fmt.Sprintf("http://%s/healthz", admin)); code != http.StatusOK {
		t.Fatalf("/healthz: %d, want 200: the daemon is alive", code)
	}
	code, hl := getStatus(t, fmt.Sprintf("http://%s/readyz", admin))
	if code != http.StatusServiceUnavailable || hl.Ready || hl.Joined || hl.Store != "" {
		t.Fatalf("/readyz: %d %+v; want 503, not joined", code, hl)
	}
}

// A member speaking a newer statement format (here, version 2 of the
// sealed holds and state) is refused with that reason, never read as
// version 1: the refusal is counted by reason, exported as a metric, and
// status carries a warning saying a member runs a newer scatter.
func TestFutureStatementsAreRefusedAndSaid(t *testing.T) {
	c := newTestCluster(t)
	reg := prometheus.NewRegistry()
	c.Configure = func(cfg *host.Config) {
		if cfg.Name == "h0" {
			cfg.Metrics = reg
		}
	}
	c.start("origin", 150, true)
	h := c.start("h0", 151, false)
	newer := c.StartHostile("newer", 152, membership.Meta{Role: "host"}, host.SignMeta)
	c.WaitMembers(3, 20*time.Second)

	holds, err := host.HoldsMessage(newer.Name, newer.Name, core.ReleaseID{1}, newer.Key)
	if err != nil {
		t.Fatal(err)
	}
	state, err := host.StateMessage(newer.Name, nil, newer.Key)
	if err != nil {
		t.Fatal(err)
	}
	// The seal's magic ends in its format version: "SCATHST1" becomes 2.
	const magicLen = len("SCATHST1")
	holds[1+magicLen-1], state[magicLen-1] = '2', '2' // holds[0] is the gossip kind
	if err := newer.Node.Broadcast(holds); err != nil {
		t.Fatal(err)
	}
	if err := newer.Node.SetState(state); err != nil {
		t.Fatal(err)
	}
	c.waitFor("both refused as unknown-version", 20*time.Second, func() bool {
		r := h.Refused()
		return r["holds:unknown-version"] > 0 && r["state:unknown-version"] > 0
	})
	for _, p := range h.Swarm().Status().Repos {
		t.Fatalf("a refused holds note was taken: %+v", p)
	}
	cs := h.ClusterStatus(context.Background())
	if len(cs.Warnings) < 2 || !strings.Contains(strings.Join(cs.Warnings, "\n"), "a member runs a newer scatter") {
		t.Errorf("status warnings: %q", cs.Warnings)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() != "scatter_statements_refused_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "state:unknown-version" && m.GetCounter().GetValue() > 0 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("scatter_statements_refused_total{reason=\"state:unknown-version\"} missing")
	}
}
