#!/usr/bin/env bash
# build-deb.sh packages edgecam as a .deb for the host architecture (or GOARCH, with CC
# and PKG_CONFIG_* pointing into a sysroot for cross builds).
#
# usage: packaging/build-deb.sh [OUT_DIR]   (default dist)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
goarch=${GOARCH:-$(go env GOARCH)}
case $goarch in
  amd64) arch=amd64 ;;
  arm64) arch=arm64 ;;
  arm) arch=armhf ;;
  *) echo "build-deb: unsupported GOARCH $goarch" >&2; exit 2 ;;
esac
# A tag (v1.2.3 → 1.2.3); without one, 0.0.0+g<commit> (a bare hash may start with a digit
# and would make a nonsensical version).
version=$(git describe --tags --dirty 2>/dev/null || echo "0.0.0+g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
version=${version#v}
[[ $version =~ ^[0-9] ]] || version="0.0.0+$version"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/edgecam" "$stage/usr/share/doc/edgecam"
CGO_ENABLED=1 GOARCH=$goarch go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$stage/usr/bin/edgecam" ./cmd/edgecam
install -m 644 systemd/edgecam.service "$stage/lib/systemd/system/"
install -m 640 configs/edgecam.yaml "$stage/etc/edgecam/edgecam.yaml"
install -m 644 README.md "$stage/usr/share/doc/edgecam/"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control.in >"$stage/DEBIAN/control"
echo "/etc/edgecam/edgecam.yaml" >"$stage/DEBIAN/conffiles"
install -m 755 packaging/debian/postinst packaging/debian/prerm "$stage/DEBIAN/"

mkdir -p "$out"
deb="$out/edgecam_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "build-deb: $deb"
