package rollout

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Size
	}{
		{"0", Size{}},
		{"3", Size{N: 3}},
		{" 12 ", Size{N: 12}},
		{"0%", Size{N: 0, Percent: true}},
		{"25%", Size{N: 25, Percent: true}},
		{"100%", Size{N: 100, Percent: true}},
		{"007", Size{N: 7}},
	} {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "%", "-1", "+3", "101%", "1.5", "25 %%", "abc", "3x", "1e3", "99999999999999999999999"} {
		_, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
			continue
		}
		if !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseSize(%q) error %q does not quote the input", in, err)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, s := range []string{"0", "3", "0%", "25%", "100%"} {
		z, err := ParseSize(s)
		if err != nil {
			t.Fatal(err)
		}
		if z.String() != s {
			t.Errorf("ParseSize(%q).String() = %q", s, z)
		}
		b, _ := z.MarshalText()
		var back Size
		if err := back.UnmarshalText(b); err != nil || back != z {
			t.Errorf("text round trip of %q: %+v, %v", s, back, err)
		}
	}
}

func TestSizeOf(t *testing.T) {
	for _, c := range []struct {
		size  string
		total int
		want  int
	}{
		{"25%", 28, 7},
		{"25%", 30, 8}, // 7.5 rounds up
		{"25%", 5, 2},  // 1.25 rounds up
		{"1%", 1, 1},
		{"1%", 100, 1},
		{"1%", 101, 2},
		{"10%", 20, 2},
		{"10%", 21, 3},
		{"100%", 7, 7},
		{"0%", 7, 0},
		{"0", 7, 0},
		{"3", 7, 3},
		{"30", 7, 7}, // never more than total
		{"50%", 0, 0},
		{"3", 0, 0},
		{"3", -1, 0},
	} {
		z, err := ParseSize(c.size)
		if err != nil {
			t.Fatal(err)
		}
		if got := z.Of(c.total); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.size, c.total, got, c.want)
		}
	}
}
