#!/usr/bin/env bash
# deb-depends.sh prints the Depends entries for the shared libraries an ELF binary needs,
# one per line, computed the way dpkg-shlibdeps does it: each NEEDED soname is found in the
# sysroot's library directories, mapped to the package that owns the file, and that
# package's shlibs control file gives the dependency (with its minimum version).
#
# usage: packaging/deb-depends.sh BINARY SYSROOT
#
# SYSROOT is a sysroot made by scripts/cross-sysroot.sh (it reads <SYSROOT>/.edgecam/files
# and <SYSROOT>/.edgecam/shlibs/), or / for a native build (it asks the host's dpkg).
set -euo pipefail
bin=${1:?usage: deb-depends.sh BINARY SYSROOT}
root=${2:?usage: deb-depends.sh BINARY SYSROOT}
[ -f "$bin" ] || { echo "deb-depends: no binary at $bin" >&2; exit 2; }

# The multiarch directories of the binary's architecture.
machine=$(LC_ALL=C readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
case $machine in
  AArch64) triplet=aarch64-linux-gnu ;;
  ARM) triplet=arm-linux-gnueabihf ;;
  *X86-64*) triplet=x86_64-linux-gnu ;;
  *) echo "deb-depends: $bin is for '$machine', not arm64, armhf or amd64" >&2; exit 2 ;;
esac
mapfile -t needed < <(LC_ALL=C readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ "${#needed[@]}" -gt 0 ] || { echo "deb-depends: $bin has no NEEDED libraries (not a cgo binary?)" >&2; exit 2; }

owner() { # path of the soname in the library directories -> owning package
  local so=$1 d
  if [ "$root" = / ]; then
    for d in /lib/$triplet /usr/lib/$triplet /lib /usr/lib; do
      if [ -e "$d/$so" ]; then
        dpkg-query -S "$d/$so" 2>/dev/null | head -n1 | cut -d: -f1 && return 0
        # usr-merged hosts: the package may list the other spelling of the directory.
        dpkg-query -S "$(readlink -f "$d/$so")" 2>/dev/null | head -n1 | cut -d: -f1 && return 0
      fi
    done
    return 1
  fi
  awk -F'\t' -v a="/lib/$triplet/$so" -v b="/usr/lib/$triplet/$so" -v c="/lib/$so" -v d="/usr/lib/$so" \
    '$1==a||$1==b||$1==c||$1==d {print $2; exit}' "$root/.edgecam/files"
}

shlibs() { # package -> its shlibs file text
  if [ "$root" = / ]; then
    local f
    for f in "/var/lib/dpkg/info/$1:$(dpkg --print-architecture).shlibs" "/var/lib/dpkg/info/$1.shlibs"; do
      [ -f "$f" ] && { cat "$f"; return 0; }
    done
    return 0
  fi
  cat "$root/.edgecam/shlibs/$1" 2>/dev/null || true
}

for so in "${needed[@]}"; do
  # libfoo.so.1 -> "libfoo 1"; libfoo-1.2.so -> "libfoo 1.2" (shlibs' name and version).
  if [[ $so =~ ^(.+)\.so\.(.+)$ ]]; then
    name=${BASH_REMATCH[1]} ver=${BASH_REMATCH[2]}
  elif [[ $so =~ ^(.+)-([0-9.]+)\.so$ ]]; then
    name=${BASH_REMATCH[1]} ver=${BASH_REMATCH[2]}
  else
    echo "deb-depends: cannot read the soname $so" >&2; exit 1
  fi
  pkg=$(owner "$so" || true)
  if [ -z "$pkg" ]; then
    echo "deb-depends: no package in $root owns $so (needed by $bin): add its -dev package to packaging/cross/sysroot-packages.txt" >&2
    exit 1
  fi
  dep=$(shlibs "$pkg" | awk -v n="$name" -v v="$ver" '$1==n && $2==v {$1=""; $2=""; sub(/^ +/, ""); if (!f) print; f=1}')
  if [ -z "$dep" ]; then
    echo "deb-depends: $pkg (owner of $so) has no shlibs entry for '$name $ver'" >&2
    exit 1
  fi
  echo "$dep"
done | sort -u
