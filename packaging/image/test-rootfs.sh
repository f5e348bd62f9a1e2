#!/usr/bin/env bash
# test-rootfs.sh makes (or finds in its cache) a Debian root file system standing in for a
# Raspberry Pi OS image in the factory tests: mmdebstrap minbase of the given architecture
# with systemd and the package's dependencies (its Depends, without versions) installed,
# maintainer scripts run under qemu-user. Prints its path on stdout.
#
# usage: packaging/image/test-rootfs.sh ARCH DEB
# Environment: SUITE, MIRROR, SYSROOT_CACHE as for scripts/cross-sysroot.sh.
set -euo pipefail
arch=${1:?usage: test-rootfs.sh ARCH DEB}
deb=${2:?usage: test-rootfs.sh ARCH DEB}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
# "a (>= 1), b | c" -> "a,b,systemd"
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v '^$' | sort -u | paste -sd, -)
pkgs="systemd,$deps"
key=$(printf '%s\n' "$arch" "$suite" "$mirror" "$pkgs" | sha256sum | cut -c1-12)
cache=${SYSROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/sysroots}
dir=$cache/rootfs-$arch-$suite-$key
if [ -f "$dir.complete" ]; then
  echo "$dir"
  exit 0
fi
# mmdebstrap runs the image's maintainer scripts through qemu-user and binfmt_misc; in a
# container without systemd nobody has mounted binfmt_misc or enabled the qemu entries.
case $arch in arm64) cpu=aarch64 ;; armhf) cpu=arm ;; *) cpu= ;; esac
if [ -n "$cpu" ] && [ "$arch" != "$(dpkg --print-architecture)" ]; then
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    { echo "test-rootfs: cannot mount binfmt_misc: $arch programs cannot run here" >&2; exit 1; }
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$cpu" ] || update-binfmts --enable "qemu-$cpu" ||
    { echo "test-rootfs: no qemu-$cpu binfmt entry: apt-get install qemu-user-static binfmt-support" >&2; exit 1; }
fi
mkdir -p "$cache"
rm -rf "$dir"
echo "test-rootfs: making a $arch $suite root file system with $pkgs" >&2
mmdebstrap --quiet --mode=root --variant=minbase --architectures="$arch" --include="$pkgs" \
  "$suite" "$dir" "$mirror" >&2
touch "$dir.complete"
echo "$dir"
