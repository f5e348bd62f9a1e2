#!/usr/bin/env bash
# build-kvssink.sh builds kvssink, the Kinesis Video Streams GStreamer element, from AWS's
# producer sources, as one self-contained static plugin: libgstkvssink.so.
#
# Pinned sources: producer SDK (C++) v3.6.0, producer-c v1.6.0, PIC v1.2.0 (Apache-2.0).
# They come from a directory of source tarballs, KVS_PRODUCER_SRC (default:
# ../shared/third_party/kvs-producer next to the repository, when present), or else from the
# upstream tags on GitHub (git clone). The SDK's CMake always fetches producer-c and PIC with
# git; this script points those ExternalProject steps at local tarballs instead, so the build
# never needs the network once the sources are here.
#
# The result is cached, keyed by the sources' sha256, this script's version, the machine and
# its GStreamer version, under $KVSSINK_CACHE (default ~/.cache/edgecam/kvssink/<key>/): a
# second run only copies it. The plugin is copied to $OUT (default <repo>/.cache/kvssink).
#
# Usage: scripts/build-kvssink.sh [--quiet] [--if-sources]
#   --quiet       print only the plugin directory on stdout (progress goes to stderr)
#   --if-sources  exit 0 without doing anything when no sources (and no cached build) exist
# Environment: KVS_PRODUCER_SRC, KVSSINK_CACHE, OUT, JOBS (default: number of cores),
#   KVSSINK_NO_APT=1 (never install Debian packages; fail naming the missing ones).
set -euo pipefail

script_version=1
sdk_tag=v3.6.0
producer_c_tag=v1.6.0
pic_tag=v1.2.0
sdk_tar=producer-sdk-cpp-${sdk_tag}.tar.gz
pc_tar=producer-c-${producer_c_tag}.tar.gz
pic_tar=pic-${pic_tag}.tar.gz
sdk_repo=https://github.com/awslabs/amazon-kinesis-video-streams-producer-sdk-cpp.git
pc_repo=https://github.com/awslabs/amazon-kinesis-video-streams-producer-c.git
pic_repo=https://github.com/awslabs/amazon-kinesis-video-streams-pic.git

quiet=0
if_sources=0
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    --if-sources) if_sources=1 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-kvssink: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "build-kvssink: $*" >&2; }
die() { echo "build-kvssink: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$repo/.cache/kvssink}
cache_root=${KVSSINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/kvssink}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

src=${KVS_PRODUCER_SRC:-}
if [ -z "$src" ] && [ -d "$repo/../shared/third_party/kvs-producer" ]; then
  src=$(cd "$repo/../shared/third_party/kvs-producer" && pwd)
fi
have_tarballs() { [ -n "$src" ] && [ -f "$src/$sdk_tar" ] && [ -f "$src/$pc_tar" ] && [ -f "$src/$pic_tar" ]; }
if [ -n "${KVS_PRODUCER_SRC:-}" ] && ! have_tarballs; then
  die "KVS_PRODUCER_SRC=$KVS_PRODUCER_SRC must hold $sdk_tar, $pc_tar and $pic_tar"
fi

# Debian packages the build needs. Installed only when missing (apt-get update first).
build_pkgs=(cmake g++ make pkg-config libcurl4-openssl-dev libssl-dev liblog4cplus-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools)
ensure_packages() {
  local missing=() p
  for p in "${build_pkgs[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
      missing+=("$p")
    fi
  done
  if ! command -v git >/dev/null 2>&1 && ! have_tarballs; then missing+=(git); fi
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! command -v dpkg-query >/dev/null 2>&1 || [ "${KVSSINK_NO_APT:-0}" = 1 ]; then
    die "install these packages first: ${missing[*]}"
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
    sudo=(sudo)
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 -y --no-install-recommends install -qq "${missing[@]}" >/dev/null
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# publish copies a finished build ($1: cache entry) to $out and reports where it is.
publish() {
  local entry=$1
  mkdir -p "$out"
  # Copy then rename: a test process loading the old plugin never sees half a file.
  cp "$entry/libgstkvssink.so" "$out/.libgstkvssink.so.tmp"
  mv -f "$out/.libgstkvssink.so.tmp" "$out/libgstkvssink.so"
  cp "$entry/LICENSE" "$entry/NOTICE" "$entry/BUILD-INFO" "$out/"
  if command -v gst-inspect-1.0 >/dev/null 2>&1; then
    # A registry of its own: the user's registry cache is neither read nor rewritten.
    local reg
    reg=$(mktemp)
    if ! GST_REGISTRY="$reg" GST_PLUGIN_SYSTEM_PATH_1_0="$out" GST_PLUGIN_PATH= gst-inspect-1.0 kvssink >/dev/null 2>&1; then
      rm -f "$reg"
      die "$out/libgstkvssink.so was built but GStreamer does not load it: run GST_PLUGIN_PATH=$out gst-inspect-1.0 kvssink to see why"
    fi
    rm -f "$reg"
  fi
  if [ "$quiet" = 1 ]; then
    echo "$out"
  else
    echo "kvssink: $out/libgstkvssink.so ($(tr -d '\n' <"$entry/BUILD-INFO"))"
    echo "  use it:  export GST_PLUGIN_PATH=$out   (or recording.kvs.plugin_dir: $out)"
    echo "  check:   GST_PLUGIN_PATH=$out gst-inspect-1.0 kvssink"
  fi
}

work=
cleanup() { if [ -n "$work" ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

# The sources: the tarballs, or upstream clones packed into tarballs of the same shape.
if ! have_tarballs; then
  if [ "$if_sources" = 1 ]; then
    # make test: only sources already here count, never the network; a plugin built
    # before is still published.
    latest=$(ls -td "$cache_root"/*/ 2>/dev/null | head -1 || true)
    if [ -n "$latest" ] && [ -f "$latest/libgstkvssink.so" ]; then publish "${latest%/}"; fi
    exit 0
  fi
  command -v git >/dev/null 2>&1 || ensure_packages
  mkdir -p "$cache_root"
  work=$(mktemp -d "$cache_root/.work.XXXXXX")
  src=$work/src
  mkdir -p "$src"
  say "no source tarballs (set KVS_PRODUCER_SRC): cloning the upstream tags"
  clone_pack() { # $1 repo url, $2 tag, $3 tarball, $4 prefix
    git -c advice.detachedHead=false clone -q --depth 1 --branch "$2" "$1" "$work/git-$3" ||
      die "git clone $1 at $2 failed: no network? Put $sdk_tar, $pc_tar and $pic_tar in a directory and set KVS_PRODUCER_SRC to it"
    git -C "$work/git-$3" archive --format=tar.gz --prefix="$4/" -o "$src/$3" HEAD
  }
  clone_pack "$sdk_repo" "$sdk_tag" "$sdk_tar" "amazon-kinesis-video-streams-producer-sdk-cpp-${sdk_tag#v}"
  clone_pack "$pc_repo" "$producer_c_tag" "$pc_tar" "amazon-kinesis-video-streams-producer-c-${producer_c_tag#v}"
  clone_pack "$pic_repo" "$pic_tag" "$pic_tar" "amazon-kinesis-video-streams-pic-${pic_tag#v}"
fi

ensure_packages
gst_version=$(pkg-config --modversion gstreamer-1.0)
key_input="script=$script_version
arch=$(uname -m)
gstreamer=$gst_version
sdk=$(sha "$src/$sdk_tar")
producer-c=$(sha "$src/$pc_tar")
pic=$(sha "$src/$pic_tar")"
key=$(printf '%s\n' "$key_input" | sha256sum | cut -c1-16)
entry=$cache_root/$key
mkdir -p "$cache_root"

# One build at a time per cache (make test and a dry-run may start together).
exec 9>"$cache_root/.lock"
flock 9
if [ -f "$entry/libgstkvssink.so" ]; then
  say "cached build $key"
  publish "$entry"
  exit 0
fi

if [ -z "$work" ]; then work=$(mktemp -d "$cache_root/.work.XXXXXX"); fi
start=$(date +%s)
say "building kvssink (SDK $sdk_tag, producer-c $producer_c_tag, PIC $pic_tag) in $work, $jobs jobs"

# file:// URL of a local path (no characters in our paths need escaping but spaces).
file_url() { echo "file://${1// /%20}"; }

# rewrite_fetch <CMakeLists file> <tarball>: the ExternalProject's git lines become a URL.
rewrite_fetch() {
  local f=$1 tarball=$2
  grep -q 'GIT_REPOSITORY' "$f" || die "$f has no GIT_REPOSITORY line: not the pinned sources?"
  sed -i -e "s|^\([[:space:]]*\)GIT_REPOSITORY.*|\1URL $(file_url "$tarball")\n\1URL_HASH SHA256=$(sha "$tarball")|" \
    -e '/^[[:space:]]*GIT_TAG/d' -e '/^[[:space:]]*GIT_SHALLOW/d' -e '/^[[:space:]]*GIT_PROGRESS/d' "$f"
}

# PIC: as given. producer-c: re-packed with its PIC fetch pointed at the PIC tarball.
cp "$src/$pic_tar" "$work/$pic_tar"
mkdir -p "$work/pc"
tar -xzf "$src/$pc_tar" -C "$work/pc"
pc_dir=$(find "$work/pc" -mindepth 1 -maxdepth 1 -type d | head -1)
rewrite_fetch "$pc_dir/CMake/Dependencies/libkvspic-CMakeLists.txt" "$work/$pic_tar"
tar -czf "$work/$pc_tar" -C "$work/pc" "$(basename "$pc_dir")"

mkdir -p "$work/sdk"
tar -xzf "$src/$sdk_tar" -C "$work/sdk"
sdk_dir=$(find "$work/sdk" -mindepth 1 -maxdepth 1 -type d | head -1)
rewrite_fetch "$sdk_dir/CMake/Dependencies/libkvscproducer-CMakeLists.txt" "$work/$pc_tar"

cmake_args=(-DBUILD_GSTREAMER_PLUGIN=ON -DBUILD_DEPENDENCIES=OFF -DBUILD_TEST=OFF
  -DCMAKE_BUILD_TYPE=Release -DBUILD_STATIC=ON)
case "$(uname -m)" in
  arm*) cmake_args+=(-DALIGNED_MEMORY_MODEL=ON) ;; # 32-bit ARM faults on unaligned access
esac
log=$work/build.log
if ! cmake -S "$sdk_dir" -B "$work/build" "${cmake_args[@]}" >"$log" 2>&1 ||
  ! cmake --build "$work/build" --target gstkvssink -j "$jobs" >>"$log" 2>&1; then
  tail -40 "$log" >&2
  cp "$log" "$cache_root/last-failed-build.log"
  die "build failed (full log: $cache_root/last-failed-build.log)"
fi
plugin=$(find "$work/build" -name libgstkvssink.so -type f | head -1)
[ -n "$plugin" ] || die "the build finished without libgstkvssink.so (log: $log)"
secs=$(($(date +%s) - start))

mkdir -p "$work/entry"
cp "$plugin" "$work/entry/libgstkvssink.so"
strip --strip-unneeded "$work/entry/libgstkvssink.so" 2>/dev/null || true
cp "$sdk_dir/LICENSE" "$sdk_dir/NOTICE" "$work/entry/"
printf 'kvssink from producer SDK %s, producer-c %s, PIC %s; GStreamer %s, %s; built in %ss on %s\n' \
  "$sdk_tag" "$producer_c_tag" "$pic_tag" "$gst_version" "$(uname -m)" "$secs" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/entry/BUILD-INFO"
rm -rf "$entry"
mv "$work/entry" "$entry"
say "built in ${secs}s"
publish "$entry"
