#!/usr/bin/env bash
# Builds scatter_VERSION_ARCH.deb with dpkg-deb: the static binary, the
# systemd unit, sysusers.d and tmpfiles.d entries, /etc/scatter/seed.yaml,
# /etc/default/scatter, and the polkit and sudo examples with the docs.
#
#   packaging/build.sh [VERSION [OUTDIR]]
#
# VERSION defaults to 0.0.0~git<date>.<revision>; the binary reports it
# (scatter version) through -X scatter/orchestrate/version.Override.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version=${1:-0.0.0~git$(date -u +%Y%m%d).$rev}
out=${2:-dist}
arch=$(dpkg --print-architecture)
export PATH="/usr/local/go/bin:$PATH"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$out" "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" \
    "$root/usr/lib/tmpfiles.d" "$root/etc/scatter" "$root/etc/default" "$root/usr/share/doc/scatter/examples"

CGO_ENABLED=0 go build -buildvcs=auto -ldflags "-s -w -X scatter/orchestrate/version.Override=$version" \
    -o "$root/usr/bin/scatter" ./cmd/scatter

install -m 0644 packaging/scatter-seed.service "$root/usr/lib/systemd/system/scatter-seed.service"
install -m 0644 packaging/sysusers.conf "$root/usr/lib/sysusers.d/scatter.conf"
install -m 0644 packaging/tmpfiles.conf "$root/usr/lib/tmpfiles.d/scatter.conf"
install -m 0644 packaging/seed.yaml "$root/etc/scatter/seed.yaml"
install -m 0644 packaging/default.env "$root/etc/default/scatter"
install -m 0644 packaging/50-scatter.rules packaging/sudoers packaging/sudo.conf \
    orchestrate/config/example_seed.yaml orchestrate/config/example_scatter.yaml "$root/usr/share/doc/scatter/examples/"
install -m 0644 README.md docs/service.md docs/operations.md "$root/usr/share/doc/scatter/"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/control" <<CONTROL
Package: scatter
Version: $version
Architecture: $arch
Maintainer: scatter maintainers <scatter@localhost>
Section: admin
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Recommends: systemd, polkitd | policykit-1
Description: peer-to-peer release distribution and deploy orchestration
 scatter ships a large release from one deploy host to thousands of servers,
 peer to peer, and rolls it out with canaries, health checks and automatic
 rollback. This package runs its daemon (scatter-seed.service) as the
 scatter user with /var/lib/scatter as its data directory.
CONTROL

deb="$out/scatter_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
