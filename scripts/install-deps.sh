#!/usr/bin/env bash
# install-deps.sh installs the Debian packages edgecam needs to build, test and dry-run.
# It is idempotent: it installs only what is missing, says what it installs, and works
# as root or through sudo. Set DEPS_SET=build|test|cross|all to choose a set (default all;
# cross is build plus the ARM cross-build and image tools).
set -euo pipefail

build_pkgs=(
  pkg-config
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  gstreamer1.0-tools
  gstreamer1.0-rtsp
)
test_pkgs=(
  libgstrtspserver-1.0-dev
  mosquitto
  systemd
  chromium
  ffmpeg
  openssl
)
# Cross-built ARM .debs (make deb ARCH=arm64|armhf, make cross-check) and the factory image
# flow: sysroots, Debian's cross compilers, qemu-user, image partitions.
cross_pkgs=(
  mmdebstrap
  arch-test
  gcc-aarch64-linux-gnu
  gcc-arm-linux-gnueabihf
  qemu-user-static
  binfmt-support
  fdisk
)

case "${DEPS_SET:-all}" in
  build) wanted=("${build_pkgs[@]}") ;;
  cross) wanted=("${build_pkgs[@]}" "${cross_pkgs[@]}") ;;
  test | all) wanted=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "install-deps: DEPS_SET must be build, test, cross or all (got '${DEPS_SET}')" >&2; exit 2 ;;
esac

# Node.js runs AWS's own JavaScript SDKs against localcloud in the tests. Machines that
# already have a node (and npm) keep theirs.
if [ "${DEPS_SET:-all}" != build ] && ! command -v npm >/dev/null 2>&1; then
  wanted+=(nodejs npm)
fi

missing=()
for p in "${wanted[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} system packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Serialise with any other apt run (CI jobs, a second make target) instead of failing on the lock.
apt_opts=(-o DPkg::Lock::Timeout=300 -y --no-install-recommends)
"${sudo[@]}" apt-get "${apt_opts[@]:0:2}" update -qq
"${sudo[@]}" apt-get "${apt_opts[@]}" install -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
