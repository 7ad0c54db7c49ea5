package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"scatter/artifact"
	"scatter/artifact/core"
	"scatter/artifact/datadir"
	"scatter/bench/gen"
)

// RoundTripConfig sizes the artifact round trip. Zero values mean defaults.
type RoundTripConfig struct {
	Dir  string       // work directory (must exist); trees and the store go here
	Size int64        // generated release size; 0: 256 MiB
	Seed uint64       // generator seed; 0: 1
	Log  *slog.Logger // nil: discard
}

// BuildFigures are one build's figures.
type BuildFigures struct {
	Release   string  `json:"release"`
	Files     int     `json:"files"`
	Bytes     int64   `json:"bytes"`
	Chunks    int     `json:"chunks"`
	NewChunks int     `json:"new_chunks"`
	NewBytes  int64   `json:"new_bytes"`
	Seconds   float64 `json:"seconds"`
	MBps      float64 `json:"mb_per_s"` // uncompressed MB (10^6) per second
}

// RoundTripReport is what RoundTrip measured.
type RoundTripReport struct {
	Size  int64        `json:"size"`
	Seed  uint64       `json:"seed"`
	CPUs  int          `json:"cpus"`
	Go    string       `json:"go"`
	First BuildFigures `json:"first_build"`
	// Code and L10n are rebuilds after mutation (a) and then (b).
	Code BuildFigures `json:"code_change_build"`
	L10n BuildFigures `json:"l10n_update_build"`
	// Delta ratios: new compressed bytes over the full release's compressed bytes.
	CodeDeltaRatio float64 `json:"code_delta_ratio"`
	L10nDeltaRatio float64 `json:"l10n_delta_ratio"`
	// Materialize timings of the code-change release: cold, and reusing the
	// first release's tree.
	ColdMaterializeSeconds  float64 `json:"cold_materialize_seconds"`
	ReuseMaterializeSeconds float64 `json:"reuse_materialize_seconds"`
	ReuseLinkedFiles        int     `json:"reuse_linked_files"`
	// RehashMaterializeSeconds is the reuse again from a previous tree
	// without its record (datadir.TreeRecord): every file it links is read
	// and hashed first. RehashedBytes is what was read.
	RehashMaterializeSeconds float64 `json:"rehash_materialize_seconds"`
	RehashedBytes            int64   `json:"rehashed_bytes"`
	VerifySeconds            float64 `json:"verify_seconds"`
	// Wire cost per host of each mutation under each piece layout.
	CodeLayouts []WireCost `json:"code_change_layouts"`
	L10nLayouts []WireCost `json:"l10n_update_layouts"`
	// ManifestBytes is the size of the last release's signed manifest.
	ManifestBytes int  `json:"manifest_bytes"`
	Identical     bool `json:"identical"` // every materialized tree equals its source
}

// RoundTrip generates a MediaWiki-like release, builds it, applies the
// code-change and localisation mutations and rebuilds after each, then
// materializes (cold and reusing the previous tree) and verifies. It is the
// artifact layer's end-to-end check and its benchmark.
func RoundTrip(ctx context.Context, cfg RoundTripConfig) (*RoundTripReport, error) {
	if cfg.Size == 0 {
		cfg.Size = 256 << 20
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	rep := &RoundTripReport{Size: cfg.Size, Seed: cfg.Seed, CPUs: runtime.NumCPU(), Go: runtime.Version()}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	st, err := artifact.OpenStore(filepath.Join(cfg.Dir, "store"), cfg.Log)
	if err != nil {
		return nil, err
	}
	gcfg := gen.Config{Seed: cfg.Seed, TotalBytes: cfg.Size}
	src := []string{filepath.Join(cfg.Dir, "v1"), filepath.Join(cfg.Dir, "v2"), filepath.Join(cfg.Dir, "v3")}
	// v1 is the generated tree, v2 adds the code change, v3 then the l10n update.
	for i, dir := range src {
		if _, err := gen.Generate(dir, gcfg); err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		if i >= 1 {
			if _, err := gen.MutateCode(dir, cfg.Seed+1); err != nil {
				return nil, err
			}
		}
		if i >= 2 {
			if _, err := gen.MutateL10n(dir, cfg.Seed+2); err != nil {
				return nil, err
			}
		}
	}
	var rels []*artifact.Signed
	figs := []*BuildFigures{&rep.First, &rep.Code, &rep.L10n}
	for i, dir := range src {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := artifact.Build(ctx, st, dir, key, artifact.BuildOptions{
			Repo: "mediawiki", Version: fmt.Sprintf("1.0.%d", i), Builder: "bench", Message: "round trip", Log: cfg.Log,
		})
		if err != nil {
			return nil, err
		}
		f := BuildFigures{Release: res.Signed.ID.String(), Files: res.Files, Bytes: res.Bytes, Chunks: res.Chunks,
			NewChunks: res.NewChunks, NewBytes: res.NewBytes, Seconds: res.Duration.Seconds(),
			MBps: float64(res.Bytes) / 1e6 / res.Duration.Seconds()}
		*figs[i] = f
		rels = append(rels, res.Signed)
	}
	csize := func(id core.ChunkID) int64 {
		n, _ := st.CompressedSize(id)
		return n
	}
	for _, pieceLen := range []int64{64 << 10, 256 << 10, 1 << 20} {
		rep.CodeLayouts = append(rep.CodeLayouts, Layouts(rels[0].Manifest, rels[1].Manifest, csize, pieceLen)...)
		rep.L10nLayouts = append(rep.L10nLayouts, Layouts(rels[1].Manifest, rels[2].Manifest, csize, pieceLen)...)
	}
	rep.ManifestBytes = len(rels[2].Encode())
	rep.CodeDeltaRatio = float64(rep.Code.NewBytes) / float64(rep.First.NewBytes)
	rep.L10nDeltaRatio = float64(rep.L10n.NewBytes) / float64(rep.First.NewBytes)

	out := filepath.Join(cfg.Dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	tree1, cold2, warm2, rehash2 := filepath.Join(out, "1"), filepath.Join(out, "2-cold"), filepath.Join(out, "2-reuse"), filepath.Join(out, "2-rehash")
	if _, err := artifact.Materialize(ctx, st, rels[0], tree1, artifact.MaterializeOptions{Log: cfg.Log}); err != nil {
		return nil, err
	}
	res, err := artifact.Materialize(ctx, st, rels[1], cold2, artifact.MaterializeOptions{Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	rep.ColdMaterializeSeconds = res.Duration.Seconds()
	res, err = artifact.Materialize(ctx, st, rels[1], warm2, artifact.MaterializeOptions{Log: cfg.Log,
		Previous: &artifact.Previous{Manifest: rels[0].Manifest, Release: rels[0].ID, Dir: tree1}})
	if err != nil {
		return nil, err
	}
	rep.ReuseMaterializeSeconds = res.Duration.Seconds()
	rep.ReuseLinkedFiles = res.Linked
	// The same with no record of tree 1 (a tree staged before records, or
	// one whose files changed): every file is hashed before it is linked.
	if err := os.Remove(datadir.TreeRecord(tree1)); err != nil {
		return nil, err
	}
	res, err = artifact.Materialize(ctx, st, rels[1], rehash2, artifact.MaterializeOptions{Log: cfg.Log,
		Previous: &artifact.Previous{Manifest: rels[0].Manifest, Release: rels[0].ID, Dir: tree1}})
	if err != nil {
		return nil, err
	}
	rep.RehashMaterializeSeconds = res.Duration.Seconds()
	rep.RehashedBytes = res.RehashedBytes

	start := time.Now()
	problems, err := artifact.Verify(ctx, st, rels[2].Manifest)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("verify: %v", problems[0])
	}
	rep.VerifySeconds = time.Since(start).Seconds()

	rep.Identical = true
	for _, pair := range [][2]string{{src[0], tree1}, {src[1], cold2}, {src[1], warm2}, {src[1], rehash2}} {
		same, err := SameTree(pair[0], pair[1])
		if err != nil {
			return nil, err
		}
		rep.Identical = rep.Identical && same
	}
	return rep, nil
}
