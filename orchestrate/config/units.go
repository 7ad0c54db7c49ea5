package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of hosts, either a count or a percentage of a pool.
// orchestrate/rollout has a type of the same shape; convert with
// rollout.Size(s).
type Size struct {
	N       int
	Percent bool // N is a percentage, 0–100
}

func (s Size) String() string {
	if s.Percent {
		return strconv.Itoa(s.N) + "%"
	}
	return strconv.Itoa(s.N)
}

// ParseSize reads a count such as "3" or a percentage such as "25%".
// Neither may be negative, and a percentage is at most 100.
func ParseSize(s string) (Size, error) {
	bad := fmt.Errorf("%q: want a count like 3 or a percentage like 25%%", s)
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	if pct {
		t = strings.TrimSpace(strings.TrimSuffix(t, "%"))
	}
	if t == "" || strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return Size{}, bad
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return Size{}, bad
	}
	if pct && n > 100 {
		return Size{}, fmt.Errorf("%q: a percentage is at most 100%%", s)
	}
	return Size{N: n, Percent: pct}, nil
}

// ParseDuration reads a Go duration such as "30s", "2m" or "1h30m". A bare
// number other than 0 is refused: seconds or minutes would be a guess.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration like 30s or 2m", s)
	}
	return d, nil
}

var byteUnits = map[string]int64{
	"":    1,
	"B":   1,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"TB":  1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// ParseBytes reads a number of bytes with an optional unit: B, KB, MB, GB,
// TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), as in "100MiB",
// "1.5GiB" or "0". It is the one grammar for sizes and rates, in flags and in
// files alike; what 0 means (unlimited, say) is up to the caller. Units are
// case-sensitive, so a megabit ("Mb") is not mistaken for a megabyte. A
// fraction must come to whole bytes.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := byteUnits[unit]
	if num == "" || num[0] == '.' || !ok {
		return 0, fmt.Errorf("%q: want a number of bytes with a unit, like 100MiB, 1.5GiB or 50MB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
	}
	whole, frac, _ := strings.Cut(num, ".")
	if strings.Contains(frac, ".") {
		return 0, fmt.Errorf("%q: not a number", s)
	}
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	n *= mult
	if frac != "" {
		// frac/10^len(frac) of mult, exactly. Six decimals at most keep
		// f·mult within int64 (10^6 · 2^40 < 2^63).
		f, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || len(frac) > 6 {
			return 0, fmt.Errorf("%q: at most 6 decimals", s)
		}
		den := int64(math.Pow10(len(frac)))
		if f*mult%den != 0 {
			return 0, fmt.Errorf("%q: not a whole number of bytes", s)
		}
		if n > math.MaxInt64-f*mult/den {
			return 0, fmt.Errorf("%q: too large", s)
		}
		n += f * mult / den
	}
	return n, nil
}
