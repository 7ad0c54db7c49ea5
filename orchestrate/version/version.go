// Package version says which build of scatter is running: the module
// version, the VCS revision and time, and the Go version, read from the
// binary's build information (runtime/debug). `scatter version` prints it,
// every daemon advertises Short in its gossip meta, and `scatter status`
// shows it per member, so a fleet running mixed builds is seen at once.
//
// A package build sets Override (go build -ldflags "-X
// scatter/orchestrate/version.Override=1.2.3") so the version the package manager
// knows is the one the daemon reports. The package imports nothing of ours.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Override, when set at link time, replaces the module version.
var Override string

// Info is one build's identity.
type Info struct {
	Module   string `json:"module"`
	Version  string `json:"version"`            // module version, "(devel)" for a plain go build
	Revision string `json:"revision,omitempty"` // VCS revision, when built with -buildvcs
	Time     string `json:"time,omitempty"`     // VCS commit time, RFC 3339
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go       string `json:"go"`
}

// Get reads the running binary's build information.
func Get() Info {
	in := Info{Module: "scatter", Version: "(devel)", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		in.Module = bi.Main.Path
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Time = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if Override != "" {
		in.Version = Override
	}
	return in
}

// Short names the build in a few characters, for gossip meta and status:
// the version, and the first 12 digits of the revision when there is one,
// with "+dirty" for a modified tree. Two daemons with the same Short run
// the same code.
func (in Info) Short() string {
	s := in.Version
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if !strings.Contains(s, rev) {
			s += "+" + rev
		}
		if in.Modified && !strings.HasSuffix(s, "+dirty") {
			s += "+dirty"
		}
	}
	return s
}

// String is the full line `scatter --version` prints.
func (in Info) String() string {
	s := fmt.Sprintf("scatter %s (%s", in.Version, in.Go)
	if in.Revision != "" {
		s += ", revision " + in.Revision
		if in.Modified {
			s += " modified"
		}
	}
	if in.Time != "" {
		s += ", " + in.Time
	}
	return s + ")"
}
