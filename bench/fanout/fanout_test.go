package fanout

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"testing"
	"time"
)

// TestSmoke runs the harness small, with a generous U: it checks that the
// run is correct and its figures consistent, not how fast it is.
func TestSmoke(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Hosts: 4, Size: 2 << 20, TargetSU: 2 * time.Second, CentralHosts: 2}
	if testing.Short() {
		cfg.Hosts, cfg.Size, cfg.TargetSU = 3, 1<<20, time.Second
	}
	if testing.Verbose() {
		cfg.Progress = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems(cfg.Hosts) {
		t.Error(p)
	}

	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.FanOut.S != rep.FanOut.S {
		t.Fatalf("JSON round trip: %v", err)
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if err := CheckSVG(svg.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{}, {Dir: "x", Scenario: "3dc"}, {Dir: "x", Hosts: 2, CentralHosts: 3}, {Dir: "x", Upload: -1},
		// The link between the DCs is shaped only in netns mode, in 2dc.
		{Dir: "x", Scenario: TwoDC, DCLinkU: 2}, {Dir: "x", Netns: true, Binary: "b", DCLink: 1 << 20},
		{Dir: "x", Netns: true, Binary: "b", Scenario: TwoDC, DCLink: 1 << 20, DCLinkU: 2},
		{Dir: "x", Netns: true, Binary: "b", Scenario: TwoDC, DCLinkU: -1}, {Dir: "x", DCBlind: true}} {
		if c.Validate() == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	for _, s := range Scenarios {
		if err := (Config{Dir: "x", Scenario: s}).Validate(); err != nil {
			t.Errorf("%s: %v", s, err)
		}
		if err := (Config{Dir: "x", Scenario: s, Netns: true, Binary: "b"}).Validate(); err != nil {
			t.Errorf("%s in netns mode: %v", s, err)
		}
	}
	for _, c := range []Config{{Dir: "x", Scenario: TwoDC, DCBlind: true},
		{Dir: "x", Netns: true, Binary: "b", Scenario: TwoDC, DCLinkU: 2, DCBlind: true}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// CheckSVG checks that b is well-formed XML with an svg root and curves.
func CheckSVG(b []byte) error {
	var doc struct {
		XMLName xml.Name
		Paths   []struct{} `xml:"path"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if doc.XMLName.Local != "svg" || len(doc.Paths) < 2 {
		return &svgError{doc.XMLName.Local, len(doc.Paths)}
	}
	return nil
}

type svgError struct {
	root  string
	paths int
}

func (e *svgError) Error() string { return "svg: root " + e.root + ", too few curves" }
