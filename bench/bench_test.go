package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"scatter/artifact"
	"scatter/artifact/chunker"
	"scatter/bench/gen"
)

var benchSize = flag.Int64("bench.size", 256<<20, "size of the generated release for artifact benchmarks")

// trees holds generated trees shared by the benchmarks of one run:
// v1, v2 = v1 + code change (a), v3 = v2 + l10n update (b).
var (
	treesDir string // set once trees are generated, for TestMain to remove
	trees    = sync.OnceValues(generateTrees)
)

func generateTrees() ([3]string, error) {
	dir, err := os.MkdirTemp("", "scatter-bench-trees-")
	if err != nil {
		return [3]string{}, err
	}
	treesDir = dir
	var out [3]string
	for i := range out {
		out[i] = filepath.Join(dir, fmt.Sprintf("v%d", i+1))
		if _, err := gen.Generate(out[i], gen.Config{Seed: 1, TotalBytes: *benchSize}); err != nil {
			return out, err
		}
		if i >= 1 {
			if _, err := gen.MutateCode(out[i], 2); err != nil {
				return out, err
			}
		}
		if i >= 2 {
			if _, err := gen.MutateL10n(out[i], 3); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func benchTrees(b *testing.B) [3]string {
	t, err := trees()
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treesDir != "" {
		os.RemoveAll(treesDir)
	}
	os.Exit(code)
}

func benchKey(b *testing.B) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// BenchmarkBuildFirst: a cold build of the generated release into an empty store.
func BenchmarkBuildFirst(b *testing.B) {
	t := benchTrees(b)
	key := benchKey(b)
	var res *artifact.BuildResult
	for b.Loop() {
		b.StopTimer()
		st, err := artifact.OpenStore(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err = artifact.Build(context.Background(), st, t[0], key, artifact.BuildOptions{Repo: "mw", Version: "1"})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(res.Bytes)
	b.ReportMetric(float64(res.NewBytes)/float64(res.Bytes), "compressed/raw")
}

// BenchmarkChunkSizes builds v1, v2 (code change) and v3 (l10n update) with
// several average chunk sizes and reports the delta of each mutation as a
// fraction of the full compressed release, with the chunk count.
func BenchmarkChunkSizes(b *testing.B) {
	t := benchTrees(b)
	key := benchKey(b)
	for _, avg := range []int{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10} {
		p := chunker.Params{Min: avg / 4, Avg: avg, Max: avg * 4}
		b.Run(fmt.Sprintf("avg=%dKiB", avg>>10), func(b *testing.B) {
			for b.Loop() {
				st, err := artifact.OpenStore(b.TempDir(), nil)
				if err != nil {
					b.Fatal(err)
				}
				var res [3]*artifact.BuildResult
				for i, dir := range t {
					res[i], err = artifact.Build(context.Background(), st, dir, key, artifact.BuildOptions{Repo: "mw", Version: fmt.Sprint(i), Chunking: p})
					if err != nil {
						b.Fatal(err)
					}
				}
				full := float64(res[0].NewBytes)
				b.ReportMetric(float64(res[1].NewBytes)/full*100, "code%")
				b.ReportMetric(float64(res[2].NewBytes)/full*100, "l10n%")
				b.ReportMetric(float64(res[0].Chunks), "chunks")
				b.ReportMetric(float64(len(res[0].Signed.Encode())), "manifest-bytes")
			}
		})
	}
}
