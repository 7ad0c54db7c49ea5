package sim

import (
	"math"
	"reflect"
	"testing"
)

// small is a fan-out that runs in milliseconds: 256 pieces, S/U 120 s.
func small(hosts int) Config {
	const S = 32 << 20
	return Config{Hosts: hosts, Size: S, PieceLen: S / 256, Upload: S / 120, Seed: 1}
}

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkPhysics asserts what no schedule can beat: every piece leaves the
// origin at least once, so no host completes before S/U_origin; all the
// bytes the hosts receive came out of some uplink, so the last host cannot
// complete before N·S over the sum of uplinks; and every host received at
// least S.
func checkPhysics(t *testing.T, cfg Config, r Result) {
	t.Helper()
	const eps = 1e-9
	S := float64(cfg.Size)
	if first := r.Sorted[0]; first < S/cfg.originUpload()*(1-eps) {
		t.Errorf("first host at %.3fs, before S/U_origin = %.3fs", first, S/cfg.originUpload())
	}
	sum := cfg.originUpload()
	for i := range cfg.Hosts {
		sum += cfg.hostUpload(i)
	}
	if bound := float64(cfg.Hosts) * S / sum; r.Last() < bound*(1-eps) {
		t.Errorf("last host at %.3fs, before N·S/ΣU = %.3fs", r.Last(), bound)
	}
	if r.OriginUp < cfg.Size {
		t.Errorf("origin uploaded %d bytes, less than S = %d", r.OriginUp, cfg.Size)
	}
	for i := range cfg.Hosts {
		if math.IsInf(r.Done[i], 1) {
			t.Errorf("host %d never completed", i)
		}
		if got := r.FromOrigin[i] + r.FromPeers[i]; got < cfg.Size-1 {
			t.Errorf("host %d received %d bytes, less than S = %d", i, got, cfg.Size)
		}
	}
}

func TestPhysics(t *testing.T) {
	for _, origin := range []struct {
		name       string
		slots      int
		roundRobin bool
	}{{"all stripes at once", 0, false}, {"one stripe at a time", 1, false}, {"one piece per host in turn", 1, true}} {
		for _, n := range []int{1, 2, 3, 8, 32, 100, 300} {
			cfg := small(n)
			cfg.OriginSlots, cfg.OriginRoundRobin = origin.slots, origin.roundRobin
			r := run(t, cfg)
			checkPhysics(t, cfg, r)
			t.Logf("%s, %d hosts: median %.3f, last %.3f S/U; origin %.2f S", origin.name, n,
				r.Ratio(r.Median()), r.Ratio(r.Last()), float64(r.OriginUp)/float64(cfg.Size))
		}
	}
}

// A host alone fetches from the origin over the peer wire, at U_origin.
func TestOneHost(t *testing.T) {
	cfg := small(1)
	cfg.OriginUpload = 2 * cfg.Upload
	r := run(t, cfg)
	if got, want := r.Last(), float64(cfg.Size)/cfg.OriginUpload; math.Abs(got-want) > 1e-6*want {
		t.Errorf("one host took %.3fs, want S/U_origin = %.3fs", got, want)
	}
}

// With a few hosts and many pieces the swarm should come close to S/U.
func TestNearLimit(t *testing.T) {
	r := run(t, small(8))
	if last := r.Ratio(r.Last()); last > 1.15 {
		t.Errorf("8 hosts: last at %.3f S/U, want near 1", last)
	}
}

func TestCentral(t *testing.T) {
	for _, n := range []int{1, 7, 32, 500} {
		cfg := small(n)
		cfg.OriginUpload = 3 * cfg.Upload
		r, err := RunCentral(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := float64(n) * float64(cfg.Size) / cfg.OriginUpload
		if got := r.Last(); math.Abs(got-want) > 0.02*want {
			t.Errorf("%d hosts central: last at %.1fs, want N·S/U_origin = %.1fs", n, got, want)
		}
		if r.OriginUp != int64(n)*cfg.Size {
			t.Errorf("%d hosts central: origin uploaded %d, want %d", n, r.OriginUp, int64(n)*cfg.Size)
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := small(120)
	cfg.Neighbors = 20
	cfg.SlowHosts(0.1, 0.25)
	cfg.Churn = Churn{Fraction: 0.1, Leave: 0.4, Rejoin: 0.9}
	a, b := run(t, cfg), run(t, cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with one seed differ")
	}
	cfg.Seed = 2
	if c := run(t, cfg); reflect.DeepEqual(a.Done, c.Done) {
		t.Error("seeds 1 and 2 gave the same completion times")
	}
}

// Two datacenters joined by a link far slower than the sum of uplinks:
// topology-aware peer choice should send about one copy across each way,
// plus the origin's stripes for the far datacenter.
func TestTwoDCs(t *testing.T) {
	cross := func(aware bool) (Result, Config) {
		cfg := small(200)
		cfg.Neighbors = 20
		cfg.DCs, cfg.InterDC, cfg.TopologyAware = 2, 8*cfg.Upload, aware
		r := run(t, cfg)
		checkPhysics(t, cfg, r)
		return r, cfg
	}
	aware, cfg := cross(true)
	blind, _ := cross(false)
	S := float64(cfg.Size)
	t.Logf("cross-DC copies: topology-aware %.2f (last %.2f S/U), blind %.2f (last %.2f S/U)",
		float64(aware.CrossDC)/S, aware.Ratio(aware.Last()), float64(blind.CrossDC)/S, blind.Ratio(blind.Last()))
	if copies := float64(aware.CrossDC) / S; copies > 3 {
		t.Errorf("topology-aware: %.2f copies crossed the link, want near 1 per datacenter (N/2 = %d)", copies, cfg.Hosts/2)
	}
	if aware.CrossDC >= blind.CrossDC {
		t.Errorf("topology-aware sent %d bytes across, blind %d", aware.CrossDC, blind.CrossDC)
	}
}

func TestSlowHosts(t *testing.T) {
	cfg := small(100)
	cfg.SlowHosts(0.1, 0.25)
	if len(cfg.Uploads) != 10 {
		t.Fatalf("SlowHosts(0.1) slowed %d of 100 hosts", len(cfg.Uploads))
	}
	r := run(t, cfg)
	checkPhysics(t, cfg, r)
	t.Logf("10%% at U/4: median %.3f, last %.3f S/U", r.Ratio(r.Median()), r.Ratio(r.Last()))
}

func TestChurn(t *testing.T) {
	cfg := small(100)
	cfg.Churn = Churn{Fraction: 0.1, Leave: 0.5, Rejoin: 1.5}
	r := run(t, cfg)
	checkPhysics(t, cfg, r)
	late := 0
	for _, d := range r.Done {
		if r.Ratio(d) > 1.5 {
			late++
		}
	}
	if late < 10 {
		t.Errorf("%d hosts completed after the leavers rejoined, want at least the 10 leavers", late)
	}
	// Churn that rounds to no host changes nothing.
	cfg.Churn.Fraction = 0.001
	if r0 := run(t, cfg); !reflect.DeepEqual(r0.Done, run(t, small(100)).Done) {
		t.Error("churn of no host changed the completion times")
	}
	t.Logf("10%% leave at 0.5, rejoin at 1.5: median %.3f, last %.3f S/U; origin %.2f S",
		r.Ratio(r.Median()), r.Ratio(r.Last()), float64(r.OriginUp)/float64(cfg.Size))
}

func TestValidate(t *testing.T) {
	good := small(4)
	bad := []func(*Config){
		func(c *Config) { c.Hosts = 0 },
		func(c *Config) { c.Size = 0 },
		func(c *Config) { c.Upload = 0 },
		func(c *Config) { c.OriginUpload = -1 },
		func(c *Config) { c.Neighbors = -1 },
		func(c *Config) { c.Uploads = map[int]float64{4: 1} },
		func(c *Config) { c.Churn = Churn{Fraction: 0.1, Leave: 1, Rejoin: 1} },
		func(c *Config) { c.PieceLen = 1 },
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, f := range bad {
		c := good
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("bad config %d passed Validate", i)
		}
		if _, err := Run(c); err == nil {
			t.Errorf("bad config %d ran", i)
		}
	}
}

func TestPieceLenFor(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{1 << 20, 16 << 10}, {67980142, 128 << 10}, {2 << 30, 2 << 20}, {1 << 40, 4 << 20},
	} {
		if got := PieceLenFor(c.size); got != c.want {
			t.Errorf("PieceLenFor(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// The origin serving one piece per host in turn, and hosts uploading to
// four neighbours at a time in rotation, stay near S/U where swarm's
// schedule (every stripe at once, every neighbour unchoked) does not; see
// the README's Simulator section.
func TestRoundRobinOrigin(t *testing.T) {
	for _, n := range []int{100, 1000} {
		cfg := small(n)
		cfg.OriginSlots, cfg.OriginRoundRobin, cfg.UploadSlots = 1, true, 4
		r := run(t, cfg)
		checkPhysics(t, cfg, r)
		if last, up := r.Ratio(r.Last()), float64(r.OriginUp)/float64(cfg.Size); last > 1.3 || up > 1.01 {
			t.Errorf("%d hosts: last at %.3f S/U, origin uploaded %.2f S; want at most 1.3 and 1", n, last, up)
		}
	}
}
