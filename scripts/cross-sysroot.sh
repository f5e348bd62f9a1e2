#!/usr/bin/env bash
# cross-sysroot.sh makes (or finds in its cache) a Debian sysroot for cross-compiling edgecam
# with cgo, and prints its path on stdout (messages go to stderr).
#
# usage: scripts/cross-sysroot.sh arm64|armhf
#
# The sysroot is `mmdebstrap --variant=extract` of packaging/cross/sysroot-packages.txt and
# their dependencies: packages unpacked, no maintainer script run, so no emulation is needed
# and the host's dpkg is never touched (no multiarch on the host). Besides headers and .pc
# files it holds the run-time libraries (libc, GLib, GStreamer) that qemu-user loads with -L.
# The .debs are kept in <sysroot>/var/cache/apt/archives and indexed in <sysroot>/.edgecam/:
#   files    "path<TAB>package" for every file of every package (which package owns a library)
#   shlibs/  each package's shlibs control file (what a binary linked to it must depend on)
#
# Environment:
#   SUITE            Debian suite (default bookworm: Raspberry Pi OS 12 is built on it)
#   MIRROR           Debian mirror (default: the first Debian URI of this machine's
#                    /etc/apt/sources.list*, else http://deb.debian.org/debian)
#   SYSROOT_CACHE    where sysroots live (default ${XDG_CACHE_HOME:-~/.cache}/edgecam/sysroots)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-}
case $arch in
  arm64 | armhf) ;;
  *) echo "cross-sysroot: the architecture must be arm64 or armhf (got '${arch}')" >&2; exit 2 ;;
esac
suite=${SUITE:-bookworm}
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(grep -rhoE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^[:space:]]+' | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
list=$here/packaging/cross/sysroot-packages.txt
pkgs=$(grep -vE '^[[:space:]]*(#|$)' "$list" | tr -s '[:space:]' ' ' | sed 's/ $//')
key=$(printf '%s\n' "$arch" "$suite" "$MIRROR" "$pkgs" | sha256sum | cut -c1-12)
cache=${SYSROOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/sysroots}
dir=$cache/$arch-$suite-$key

if [ -f "$dir/.edgecam/complete" ]; then
  echo "cross-sysroot: $arch sysroot cached at $dir" >&2
  echo "$dir"
  exit 0
fi

for tool in mmdebstrap dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "cross-sysroot: $tool is missing: run 'DEPS_SET=cross scripts/install-deps.sh' (or apt-get install mmdebstrap)" >&2
    exit 1
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  # mmdebstrap's root mode keeps file owners right; unshare mode needs subuids set up.
  echo "cross-sysroot: run as root (mmdebstrap extracts the packages with their owners)" >&2
  exit 1
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.tmp-$arch-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "cross-sysroot: making the $arch sysroot from $MIRROR $suite: $pkgs" >&2
mmdebstrap --quiet --mode=root --variant=extract --architectures="$arch" \
  --include="${pkgs// /,}" --skip=cleanup/apt/cache \
  "$suite" "$tmp/root" "$MIRROR" >&2

# Index: who owns each file, and each package's shlibs.
idx=$tmp/root/.edgecam
mkdir -p "$idx/shlibs"
for deb in "$tmp/root/var/cache/apt/archives/"*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./|/|' -e '/\/$/d' -e "s|\$|\t$pkg|" >>"$idx/files"
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./shlibs 2>/dev/null >"$idx/shlibs/$pkg" || rm -f "$idx/shlibs/$pkg"
done
printf '%s\n' "arch=$arch" "suite=$suite" "mirror=$MIRROR" "packages=$pkgs" >"$idx/complete"
rm -rf "$dir"
mv "$tmp/root" "$dir"
echo "cross-sysroot: $arch sysroot ready at $dir" >&2
echo "$dir"
