package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
)

var (
	repoName   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	actionName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	hostName   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)
	labelValue = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	userName   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func checkRepoName(s string) error {
	if s == "" {
		return errors.New("missing; want a repository name like mediawiki")
	}
	if !repoName.MatchString(s) {
		return fmt.Errorf("%q: want a repository name of a-z, 0-9, '.', '_', '-', starting with a letter or digit, at most 64 long", s)
	}
	return nil
}

func checkActionName(s string) error {
	if !actionName.MatchString(s) {
		return fmt.Errorf("%q: want an action name of a-z, 0-9, '.', '_', '-', starting with a letter or digit", s)
	}
	return nil
}

func checkLabelValue(s string) error {
	if !labelValue.MatchString(s) {
		return fmt.Errorf("%q: want a label of letters, digits, '.', '_', '-', at most 64 long", s)
	}
	return nil
}

func checkPattern(s string) error {
	if s == "" {
		return errors.New("empty pattern; want a value or a glob like mw1*")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("%q: bad glob pattern", s)
	}
	return nil
}

func checkHostName(s string) error {
	if !hostName.MatchString(s) {
		return fmt.Errorf("%q: want a host name like mw1001", s)
	}
	return nil
}

// checkHostPort accepts "host:port" with a numeric port, and with optional
// also a bare host or IP address.
func checkHostPort(s string, optional bool) error {
	want := "want host:port like 10.0.0.5:7946"
	if optional {
		want = "want host or host:port like deploy1:7946"
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if optional {
			if _, err := netip.ParseAddr(s); err == nil || hostName.MatchString(s) {
				return nil
			}
		}
		return fmt.Errorf("%q: %s", s, want)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostName.MatchString(host) {
		return fmt.Errorf("%q: %s", s, want)
	}
	return nil
}

func checkArgv(argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command; want a program and its arguments like [php, -l, index.php]")
	}
	if argv[0] == "" {
		return errors.New("empty program name")
	}
	return nil
}
