#!/usr/bin/env bash
# build-deb.sh packages edgecam as a .deb for the host or, cross-compiled with cgo, for a
# Raspberry Pi: ARCH=arm64 (Raspberry Pi OS 64-bit) or ARCH=armhf (32-bit, ARMv7: Pi 2 and
# later). Cross builds compile against a Debian sysroot (scripts/cross-sysroot.sh) with
# Debian's cross compilers; the host's dpkg gets no foreign architecture.
#
# usage: [ARCH=amd64|arm64|armhf] packaging/build-deb.sh [OUT_DIR]   (default dist)
#
# Depends is computed, not written by hand: the shared libraries the binary links
# (packaging/deb-depends.sh, from the sysroot's shlibs) and the GStreamer plugin packages
# its pipelines use (packaging/gst-deps.sh, from packaging/gst-elements.txt).
# SYSROOT=DIR uses that sysroot instead of the cached one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
host_arch=$(dpkg --print-architecture)
if [ -z "${ARCH:-}" ] && [ -n "${GOARCH:-}" ]; then
  case $GOARCH in arm) ARCH=armhf ;; *) ARCH=$GOARCH ;; esac
fi
arch=${ARCH:-$host_arch}
goarm=
case $arch in
  amd64) goarch=amd64 triplet=x86_64-linux-gnu ;;
  arm64) goarch=arm64 triplet=aarch64-linux-gnu ;;
  # Debian armhf is ARMv7 with VFPv3-D16 (its libraries and crt files too): GOARM=7.
  armhf) goarch=arm goarm=7 triplet=arm-linux-gnueabihf ;;
  *) echo "build-deb: ARCH must be amd64, arm64 or armhf (got '$arch')" >&2; exit 2 ;;
esac
# A tag (v1.2.3 → 1.2.3); without one, 0.0.0+g<commit> (a bare hash may start with a digit
# and would make a nonsensical version).
# VERSION and COMMIT override both (a build from an exported tree).
version=${VERSION:-$(git describe --tags --dirty 2>/dev/null || echo "0.0.0+g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")}
version=${version#v}
[[ $version =~ ^[0-9] ]] || version="0.0.0+$version"
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

env=(CGO_ENABLED=1 GOOS=linux GOARCH="$goarch")
if [ "$arch" = "$host_arch" ]; then
  sysroot=/
else
  cc=$triplet-gcc
  if ! command -v "$cc" >/dev/null; then
    echo "build-deb: $cc is missing: run 'DEPS_SET=cross scripts/install-deps.sh' (Debian's gcc-$triplet)" >&2
    exit 1
  fi
  sysroot=${SYSROOT:-$(scripts/cross-sysroot.sh "$arch")}
  [ -f "$sysroot/.edgecam/complete" ] || { echo "build-deb: $sysroot is not a sysroot made by scripts/cross-sysroot.sh" >&2; exit 1; }
  env+=(GOARM="$goarm" CC="$cc --sysroot=$sysroot" CXX="$triplet-g++ --sysroot=$sysroot"
    PKG_CONFIG_SYSROOT_DIR="$sysroot" PKG_CONFIG_PATH=
    PKG_CONFIG_LIBDIR="$sysroot/usr/lib/$triplet/pkgconfig:$sysroot/usr/share/pkgconfig")
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/edgecam" "$stage/usr/share/doc/edgecam"
echo "build-deb: building edgecam $version for $arch (GOARCH=$goarch${goarm:+ GOARM=$goarm}, sysroot $sysroot)" >&2
# -tags nolocalcloud: the device has no use for localcloud (dry-run and the localcloud
# commands), whose broker and servers would take about 2 MB of the agent's memory.
env "${env[@]}" go build -trimpath -tags nolocalcloud -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$stage/usr/bin/edgecam" ./cmd/edgecam
# The unit as it is in systemd/ at build time.
install -m 644 systemd/edgecam.service "$stage/lib/systemd/system/"
install -m 640 configs/edgecam.yaml "$stage/etc/edgecam/edgecam.yaml"
install -m 644 README.md "$stage/usr/share/doc/edgecam/"

libs=$(packaging/deb-depends.sh "$stage/usr/bin/edgecam" "$sysroot" | paste -sd, - | sed 's/,/, /g')
gst=$(packaging/gst-deps.sh)
field() { sed -n "s/^$1: //p" <<<"$gst"; }
# A plugin package already named by the libraries (libgstreamer1.0-0, with its version) is
# not repeated.
plugins=$(tr ',' '\n' <<<"$(field depends)" | sed 's/^ *//' | while read -r p; do
  grep -qE "(^|, )$p( |,|\$)" <<<"$libs" || echo "$p"
done | paste -sd, - | sed 's/,/, /g')
depends="$libs${plugins:+, $plugins}, adduser"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" \
  -e "s/@RECOMMENDS@/$(field recommends)/" -e "s/@SUGGESTS@/$(field suggests)/" \
  -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$stage" | cut -f1)/" \
  packaging/debian/control.in >"$stage/DEBIAN/control"
echo "/etc/edgecam/edgecam.yaml" >"$stage/DEBIAN/conffiles"
install -m 755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"

mkdir -p "$out"
deb="$out/edgecam_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "build-deb: $deb"
