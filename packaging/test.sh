#!/usr/bin/env bash
# The package, end to end, as CI runs it (root, Debian): build the .deb,
# install it with dpkg -i, check the unit with systemd-analyze verify
# (syntax only: PID 1 is not systemd here), then run a real deploy against
# daemons started the way the unit starts them: as the scatter user, with
# the unit's environment, no new privileges and an empty capability bounding
# set (setpriv). Last, dpkg -r removes it. Ends with one line,
# "package: N passed, M failed"; exits non-zero if any check failed.
#
# The mount namespace hardening (ProtectSystem=, PrivateTmp=…) needs
# systemd as PID 1 and is not exercised here; the user, the privileges and
# the paths are.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

passed=0 failed=0
ok()   { echo "ok   $* (${SECONDS}s)"; passed=$((passed + 1)); }
fail() { echo "FAIL $* (${SECONDS}s)"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
finish() { echo "package: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

# It installs, then purges, the scatter package: never over a real one.
case $(dpkg-query -W -f '${Status}' scatter 2>/dev/null) in
*" installed") echo "package: the scatter package is installed here; not testing over it"; fail "clean machine"; finish ;;
*config-files) dpkg --purge scatter >/dev/null ;; # what an earlier run left
esac

# The data directory goes at the end too, if this run made it.
made_data=0
[ -e /var/lib/scatter ] || made_data=1
work=$(mktemp -d /tmp/scatter-package.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    dpkg-query -W scatter >/dev/null 2>&1 && dpkg --purge scatter >/dev/null 2>&1
    rm -rf "$work"
    [ "$made_data" = 1 ] && rm -rf /var/lib/scatter
}
trap cleanup EXIT

# 1. Build and install.
deb=$(packaging/build.sh 0.0.0~ci1 "$work/dist") || { fail "build the package"; finish; }
ok "build $(basename "$deb")"
if dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then ok "dpkg -i"; else cat "$work/dpkg.log"; fail "dpkg -i"; finish; fi
check "scatter user and groups exist" sh -c "getent passwd scatter >/dev/null && getent group scatter >/dev/null && getent group scatter-deploy | grep -q scatter"
check "/var/lib/scatter belongs to scatter and the deployers" test "$(stat -c %U:%G /var/lib/scatter)" = scatter:scatter-deploy
check "scatter --version names the package version" sh -c '/usr/bin/scatter --version | grep -q "scatter 0.0.0~ci1"'

# 2. The unit's syntax.
unit=/usr/lib/systemd/system/scatter-seed.service
if systemd-analyze verify "$unit" >"$work/verify.log" 2>&1; then
    ok "systemd-analyze verify scatter-seed.service"
else
    cat "$work/verify.log"; fail "systemd-analyze verify scatter-seed.service"
fi

# 3. Daemons as the unit runs them: its Environment= lines, its user.
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit")
run_as() { # run_as VAR=VALUE... -- CMD...: as the scatter user, the unit's environment plus VARs
    local extra=()
    while [ "$1" != -- ]; do extra+=("$1"); shift; done
    shift
    # In the background (EXEC=1), exec: the PID started is the daemon's.
    ${EXEC:+exec} env -i PATH=/usr/bin:/bin HOME=/var/lib/scatter "${unit_env[@]}" "${extra[@]}" \
        setpriv --reuid scatter --regid scatter --init-groups --no-new-privs --bounding-set -all -- "$@"
}

keys="$work/keys" origin="$work/origin" src="$work/src"
install -d -o scatter -g scatter -m 0700 "$keys" "$origin"
chmod 0755 "$work"
run_as -- /usr/bin/scatter keygen --out "$keys/deploy.key" || fail "keygen"
head -c 32 /dev/urandom | base64 >"$keys/cluster.key" && chown scatter:scatter "$keys/cluster.key" && chmod 0600 "$keys/cluster.key"

# The target reads /etc/scatter/seed.yaml, as the unit says (the purge at
# the end removes it with the package's other conffiles).
cat >/etc/scatter/seed.yaml <<YAML
pubkey: $keys/deploy.key.pub
cluster_key: $keys/cluster.key
bind: 127.0.0.61
join: [127.0.0.60:7946]
upload_rate: 0            # unlimited: the one size grammar takes 0
repos:
  demo:
    actions:
      restart: {command: [/usr/bin/touch, /var/lib/scatter/restarted]}
      healthy: {http: {url: "http://127.0.0.1:7948/healthz", status: 200}}
YAML

EXEC=1 run_as -- /usr/bin/scatter seed --origin --key "$keys/deploy.key" --data "$origin" --bind 127.0.0.60 --name origin \
    --admin-addr 127.0.0.60:7948 --pubkey "$keys/deploy.key.pub" --cluster-key "$keys/cluster.key" \
    >"$work/origin.log" 2>&1 &
pids+=($!)
EXEC=1 run_as -- /usr/bin/scatter seed --name target >"$work/target.log" 2>&1 &
pids+=($!)

ready() { # ready HOST:PORT: /readyz answers 200
    { exec 3<>"/dev/tcp/${1%:*}/${1#*:}"; } 2>/dev/null || return 1
    printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
    head -1 <&3 | grep -q ' 200 '
    local r=$?
    exec 3<&-
    return $r
}
metrics() { # metrics HOST:PORT
    exec 3<>"/dev/tcp/${1%:*}/${1#*:}" || return 1
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
    cat <&3
    exec 3<&-
}
waitfor() { # waitfor SECONDS CMD...
    local t=$1; shift
    for _ in $(seq $((t * 5))); do "$@" && return 0; sleep 0.2; done
    return 1
}
if waitfor 30 ready 127.0.0.1:7948 && waitfor 30 ready 127.0.0.60:7948; then
    ok "both daemons ready (/readyz) as the scatter user"
else
    tail -n 20 "$work/origin.log" "$work/target.log"; fail "daemons ready"; finish
fi
check "the target daemon runs as scatter, no new privileges, no capabilities" sh -c \
    "grep -q '^Uid:[[:space:]]*$(id -u scatter)[[:space:]]' /proc/${pids[1]}/status &&
     grep -q '^NoNewPrivs:[[:space:]]*1' /proc/${pids[1]}/status &&
     grep -q '^CapBnd:[[:space:]]*0000000000000000' /proc/${pids[1]}/status"

# 4. Enrol both hosts (scatter hosts approve, on the deploy host), then
# publish and deploy, all as the scatter user (root, the daemon's user and the
# deployers group may use the control socket; the daemon keeps the deploy key).
enrolled() {
    run_as -- /usr/bin/scatter hosts approve --data "$origin" origin target >>"$work/hosts.log" 2>&1 || \
        run_as -- /usr/bin/scatter hosts list --data "$origin" 2>>"$work/hosts.log" | grep -q "2 hosts"
}
target_has_roster() {
    run_as -- /usr/bin/scatter status --json 2>/dev/null | grep -q '"roster": [1-9]'
}
if waitfor 30 enrolled && waitfor 30 target_has_roster; then
    ok "scatter hosts approve: both daemons enrolled"
else
    cat "$work/hosts.log"; fail "scatter hosts approve"
fi

mkdir -p "$src/bin" && echo "hello $RANDOM" >"$src/index.html" && printf '#!/bin/sh\necho hi\n' >"$src/bin/run" && chmod 0755 "$src/bin/run"
printf 'repo: demo\ncanary: 0\nbatch: 1\nchecks: [healthy]\n' >"$src/scatter.yaml"
chmod -R a+rX "$src"
if run_as -- /usr/bin/scatter publish --data "$origin" --repo demo --version 1 --config "$src/scatter.yaml" "$src" >"$work/publish.log" 2>&1; then
    ok "publish"
else
    cat "$work/publish.log"; fail "publish"
fi
if run_as -- /usr/bin/scatter deploy --data "$origin" -m "package test" demo >"$work/deploy.log" 2>&1; then
    ok "deploy to the packaged daemon"
else
    cat "$work/deploy.log" "$work/target.log"; fail "deploy to the packaged daemon"
fi
check "the target runs the release (current, restarted)" sh -c \
    'cmp -s /var/lib/scatter/demo/current/index.html '"$src"'/index.html && test -e /var/lib/scatter/restarted'
check "scatter status exits 0 and shows the build" sh -c \
    "env -i PATH=/usr/bin:/bin SCATTER_DATA=/var/lib/scatter setpriv --reuid scatter --regid scatter --init-groups -- /usr/bin/scatter status | grep -q 0.0.0~ci1"
metrics 127.0.0.60:7948 >"$work/metrics.txt"
if grep -q '^scatter_deploys_total{outcome="success",repo="demo"} 1$' "$work/metrics.txt"; then
    ok "the origin's metrics count the deploy"
else
    grep '^scatter_deploy' "$work/metrics.txt"; fail "the origin's metrics count the deploy"
fi

# 5. Stop, remove.
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
pids=()
if dpkg -r scatter >"$work/dpkg.log" 2>&1 && ! test -e /usr/bin/scatter; then ok "dpkg -r"; else cat "$work/dpkg.log"; fail "dpkg -r"; fi
if dpkg --purge scatter >"$work/dpkg.log" 2>&1 && ! test -e /etc/scatter/seed.yaml; then ok "dpkg --purge"; else cat "$work/dpkg.log"; fail "dpkg --purge"; fi
finish
