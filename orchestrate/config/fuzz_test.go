package config

import (
	"os"
	"testing"
)

func addSeeds(f *testing.F, file string, extra ...string) {
	data, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// FuzzParseDeploy checks that no input panics, and that what parses also
// passes Validate: the loaded value and the file's checks agree.
func FuzzParseDeploy(f *testing.F) {
	addSeeds(f, "example_scatter.yaml", "", "repo: a\nbatch: 30x\n", "repo: &a x\nhosts: {<<: {names: [*a]}}\n", "[", "repo: a\n---\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDeploy("scatter.yaml", data)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v\n%s", err, data)
		}
		d.Hosts.Match(map[string]string{"name": "mw1001"})
		d.ActionNames()
	})
}

// FuzzParseSeed is FuzzParseDeploy for the daemon's config.
func FuzzParseSeed(f *testing.F) {
	addSeeds(f, "example_seed.yaml", "", "upload_rate: 1\n", "repos: {a: {actions: {b: {http: {url: 'http://x/'}}}}}\n", "repos: {a: ~}\n")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSeed("seed.yaml", data)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v\n%s", err, data)
		}
	})
}
