package plot

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestWriteSVG(t *testing.T) {
	for _, axis := range []Axis{Linear, Log} {
		checkSVG(t, axis)
	}
}

func checkSVG(t *testing.T, axis Axis) {
	var b bytes.Buffer
	err := WriteSVG(&b, "a <title> & more", axis,
		Curve{Name: "one", Ratios: []float64{1.2, 1.0, 1.1}},
		Curve{Name: "two & never", Ratios: []float64{1.05, math.Inf(1)}, Dash: true},
		Curve{Name: "central", Ratios: []float64{31.5, 32}},
		Curve{Name: "empty"})
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var paths, texts []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Local == "path" {
				for _, a := range e.Attr {
					if a.Name.Local == "d" {
						paths = append(paths, a.Value)
					}
				}
			}
		case xml.CharData:
			texts = append(texts, string(e))
		}
	}
	if len(paths) != 4 {
		t.Errorf("%d curves, want 4", len(paths))
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"a <title> & more", "one", "two & never", "time / (S/U)"} {
		if !strings.Contains(all, want) {
			t.Errorf("no text %q in the plot", want)
		}
	}
	if strings.Contains(b.String(), "Inf") || strings.Contains(b.String(), "NaN") {
		t.Error("a host that never completed leaked into the plot")
	}
}
