#!/usr/bin/env bash
# cross-check.sh smoke-runs the cross-built .debs under qemu-user: for each architecture it
# takes dist/edgecam_*_<arch>.deb (make deb ARCH=<arch>), extracts the binary and runs
# `edgecam version` and `edgecam config validate` of the packaged configuration, with the
# sysroot (scripts/cross-sysroot.sh) as the target's library root (qemu -L).
#
# usage: scripts/cross-check.sh [ARCH...]   (default: arm64 armhf)
set -euo pipefail
cd "$(dirname "$0")/.."
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
dist=${DIST:-dist}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in "${arches[@]}"; do
  case $arch in
    arm64) qemu=qemu-aarch64-static ;;
    armhf) qemu=qemu-arm-static ;;
    *) echo "cross-check: the architecture must be arm64 or armhf (got '$arch')" >&2; exit 2 ;;
  esac
  command -v "$qemu" >/dev/null || { echo "cross-check: $qemu is missing: apt-get install qemu-user-static" >&2; exit 1; }
  deb=$(find "$dist" -maxdepth 1 -name "edgecam_*_$arch.deb" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n1 | cut -d' ' -f2-)
  [ -n "$deb" ] || { echo "cross-check: no edgecam_*_$arch.deb in $dist: run make deb ARCH=$arch" >&2; exit 1; }
  sysroot=$(scripts/cross-sysroot.sh "$arch")
  mkdir -p "$tmp/$arch"
  dpkg-deb -x "$deb" "$tmp/$arch"
  bin=$tmp/$arch/usr/bin/edgecam
  # GStreamer's plugin scanner is a separate target binary that qemu -L cannot exec: scan
  # in-process.
  export GST_REGISTRY_FORK=no
  echo "== $deb: edgecam version (qemu-user, $arch)"
  "$qemu" -L "$sysroot" "$bin" version
  echo "== $deb: edgecam config validate (the packaged /etc/edgecam/edgecam.yaml)"
  "$qemu" -L "$sysroot" "$bin" config validate --config "$tmp/$arch/etc/edgecam/edgecam.yaml"
done
