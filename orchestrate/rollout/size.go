package rollout

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a number of hosts, either absolute ("3") or a percentage of some
// total ("25%"). It is used for the batch size and the failure limit.
type Size struct {
	N       int  // hosts, or percent when Percent is set; 0 <= N, and N <= 100 for a percentage
	Percent bool // N is a percentage of the total
}

// ParseSize parses "N" or "N%" (decimal digits only, surrounding spaces
// ignored). A percentage must be at most 100. Errors quote the bad text.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	var z Size
	if p, ok := strings.CutSuffix(t, "%"); ok {
		z.Percent = true
		t = strings.TrimSpace(p)
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return Size{}, fmt.Errorf("size %q: want a whole number of hosts like 3 or a percentage like 25%%", s)
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return Size{}, fmt.Errorf("size %q: %w", s, err)
	}
	z.N = n
	if err := z.check(); err != nil {
		return Size{}, fmt.Errorf("size %q: %w", s, err)
	}
	return z, nil
}

func (s Size) check() error {
	switch {
	case s.N < 0:
		return fmt.Errorf("negative size %d", s.N)
	case s.Percent && s.N > 100:
		return fmt.Errorf("percentage %d%% is over 100%%", s.N)
	}
	return nil
}

// String formats s the way ParseSize reads it: "3" or "25%".
func (s Size) String() string {
	if s.Percent {
		return strconv.Itoa(s.N) + "%"
	}
	return strconv.Itoa(s.N)
}

// Of is how many hosts out of total the size means, between 0 and total.
// A percentage rounds up: 25% of 30 is 8 (7.5 rounded up), 1% of 1 is 1,
// 0% is 0; rounding up makes a small percentage of a small fleet still
// mean at least one host, never none. An absolute size larger than total
// means total. A non-positive total gives 0.
//
// For a batch size the Machine uses max(1, Of(...)), so a batch is never
// empty; for a failure limit 0 means no failure is tolerated.
func (s Size) Of(total int) int {
	if total <= 0 || s.N <= 0 {
		return 0
	}
	n := s.N
	if s.Percent {
		n = (min(s.N, 100)*total + 99) / 100
	}
	return min(n, total)
}

// MarshalText implements encoding.TextMarshaler, so a Size reads and
// writes as "3" or "25%" in YAML and JSON configs.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSize.
func (s *Size) UnmarshalText(b []byte) error {
	z, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = z
	return nil
}
