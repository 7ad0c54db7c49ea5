package gen

import (
	"errors"
	"fmt"
)

const (
	defaultTotalBytes = 64 << 20
	minTotalBytes     = 1 << 20
	maxTotalBytes     = 1 << 40
	maxLanguages      = 5000
	// minLangBytes keeps every language file well above its fixed header,
	// so a language always has messages for MutateL10n to change.
	minLangBytes = 8 << 10
)

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid config")

// Config describes the tree to generate. The zero value means defaults; all
// sizes are approximate targets.
type Config struct {
	Seed       uint64 // RNG seed; same Seed+Config => byte-identical tree
	TotalBytes int64  // approximate total size of the tree; 0 => 64 MiB
	Languages  int    // number of localisation languages; 0 => derived from TotalBytes
}

// Validate reports whether Generate can honour c.
func (c Config) Validate() error {
	switch {
	case c.TotalBytes < 0:
		return fmt.Errorf("gen: %w: TotalBytes %d is negative", ErrInvalidConfig, c.TotalBytes)
	case c.TotalBytes != 0 && c.TotalBytes < minTotalBytes:
		return fmt.Errorf("gen: %w: TotalBytes %d is below the %d minimum", ErrInvalidConfig, c.TotalBytes, minTotalBytes)
	case c.TotalBytes > maxTotalBytes:
		return fmt.Errorf("gen: %w: TotalBytes %d exceeds the %d maximum", ErrInvalidConfig, c.TotalBytes, int64(maxTotalBytes))
	case c.Languages < 0:
		return fmt.Errorf("gen: %w: Languages %d is negative", ErrInvalidConfig, c.Languages)
	case c.Languages > maxLanguages:
		return fmt.Errorf("gen: %w: Languages %d exceeds the %d maximum", ErrInvalidConfig, c.Languages, maxLanguages)
	}
	d := c.withDefaults()
	if int64(d.Languages)*minLangBytes > l10nBudget(d.TotalBytes) {
		return fmt.Errorf("gen: %w: %d languages do not fit in TotalBytes %d", ErrInvalidConfig, d.Languages, d.TotalBytes)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.TotalBytes == 0 {
		c.TotalBytes = defaultTotalBytes
	}
	if c.Languages == 0 {
		c.Languages = defaultLanguages(c.TotalBytes)
	}
	return c
}

// defaultLanguages scales the language count with the tree: a real release
// carries ~450 languages, but tiny test trees would then get files too small
// to be interesting, so they get fewer (never below 8).
func defaultLanguages(total int64) int {
	return int(min(max(total/(768<<10), 8), 450))
}

// Byte budgets per content class, mirroring a MediaWiki deploy where the
// localisation cache dominates.
func codeBudget(total int64) int64  { return total * 35 / 100 }
func l10nBudget(total int64) int64  { return total * 60 / 100 }
func assetBudget(total int64) int64 { return total - codeBudget(total) - l10nBudget(total) }

// Stats describes a generated tree. Bytes counts regular-file contents only;
// Dirs excludes the root.
type Stats struct {
	Files    int
	Bytes    int64
	Dirs     int
	Symlinks int
}

// MutationStats describes what a mutation touched. BytesChanged approximates
// the size of the edited content (inserted, deleted and rewritten lines).
type MutationStats struct {
	FilesChanged int
	BytesChanged int64
}
