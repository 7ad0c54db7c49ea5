#!/usr/bin/env bash
# Property 8 (memory): peak RSS of a host daemon that fetches and stages one
# release, with real processes on loopback. An origin on 127.0.0.2 and a host
# on 127.0.0.3 join by gossip; `scatter publish` builds a generated
# MediaWiki-like tree of SIZE and announces it; once the host reports the
# release staged, its VmHWM (peak resident set) is read from /proc.
#
#   CGO_ENABLED=0 go build -o /tmp/scatter ./cmd/scatter
#   swarm/testdata/rss.sh 256MiB   # then 2GiB
#
# Environment: SCATTER (binary, default /tmp/scatter), WORK (scratch
# directory, default /tmp/scatter-rss; generated trees are kept there and
# reused, about SIZE each). Prints one line: size, files, chunks, host and
# origin VmHWM in KiB, the host's CPU seconds, fetch-and-stage seconds.
set -euo pipefail

size=${1:-256MiB}
bin=${SCATTER:-/tmp/scatter}
work=${WORK:-/tmp/scatter-rss}
src=$work/src-$size
run=$work/run-$size
mkdir -p "$work"
rm -rf "$run"
mkdir -p "$run"

if [ ! -f "$src.done" ]; then
	rm -rf "$src"
	"$bin" generate --size "$size" --seed 1 "$src" >/dev/null
	touch "$src.done"
fi

"$bin" keygen --out "$run/deploy.key" >/dev/null
head -c 32 /dev/urandom | base64 >"$run/cluster.key"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

seed() { # name ip args...
	local name=$1 ip=$2
	shift 2
	"$bin" --log-level info seed --data "$run/$name" --pubkey "$run/deploy.key.pub" --name "$name" \
		--bind "$ip" --gossip-port 0 --bt-port 0 --http-port 0 \
		--cluster-key "$run/cluster.key" --label rss "$@" >"$run/$name.log" 2>&1 &
	pids+=($!)
}

# The daemon prints "scatter seed: NAME gossip ADDR, ..." once it is up.
gossip_addr() {
	for _ in $(seq 200); do
		if a=$(grep -o ' gossip [0-9.]*:[0-9]*' "$run/$1.log" 2>/dev/null); then
			echo "${a# gossip }"
			return
		fi
		sleep 0.1
	done
	echo "$1 did not start:" >&2
	cat "$run/$1.log" >&2
	exit 1
}

seed origin 127.0.0.2 --origin --key "$run/deploy.key"
origin_pid=${pids[0]}
join=$(gossip_addr origin)
seed host 127.0.0.3 --join "$join"
host_pid=${pids[1]}
gossip_addr host >/dev/null

start=$(date +%s.%N)
id=$("$bin" publish --data "$run/origin" --repo mw --version 1 --message rss "$src")
pub=$(date +%s.%N)

# Staged: the host logs it once the tree is in place.
for _ in $(seq 3600); do
	if grep -q "release staged.*$id" "$run/host.log"; then
		break
	fi
	if ! kill -0 "$host_pid" 2>/dev/null; then
		echo "host died:" >&2
		cat "$run/host.log" >&2
		exit 1
	fi
	sleep 0.5
done
end=$(date +%s.%N)
diff -rq --no-dereference "$src" "$run/host/mw/releases/$id" >/dev/null

hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# CPU seconds (user + system) the process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
files=$(find "$src" -type f | wc -l)
chunks=$("$bin" releases --store "$run/origin/mw" --json 2>/dev/null | grep -o '"chunks": *[0-9]*' | head -1 | grep -o '[0-9]*$' || echo "?")
printf 'size=%s files=%s chunks=%s host_vmhwm_kib=%s origin_vmhwm_kib=%s host_cpu_s=%s publish_s=%.1f fetch_stage_s=%.1f\n' \
	"$size" "$files" "$chunks" "$(hwm "$host_pid")" "$(hwm "$origin_pid")" "$(cpu "$host_pid")" \
	"$(echo "$pub - $start" | bc)" "$(echo "$end - $pub" | bc)"
