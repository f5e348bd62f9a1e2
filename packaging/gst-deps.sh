#!/usr/bin/env bash
# gst-deps.sh prints the GStreamer plugin packages edgecam's pipelines need, computed from
# packaging/gst-elements.txt: each element's plugin file (gst-inspect-1.0 on the build host)
# mapped to its Debian package (dpkg-query -S). Package names are the same for every
# architecture. Output: three lines, "depends: …", "recommends: …", "suggests: …"
# (comma-separated).
#
# usage: packaging/gst-deps.sh
set -euo pipefail
table=$(dirname "$0")/gst-elements.txt
command -v gst-inspect-1.0 >/dev/null ||
  { echo "gst-deps: gst-inspect-1.0 is missing: run scripts/install-deps.sh (gstreamer1.0-tools)" >&2; exit 1; }
declare -A want=([depends]="" [recommends]="" [suggests]="")
declare -A cache=()
while read -r element plugin need pkg _; do
  [[ -z $element || $element == \#* ]] && continue
  case $need in
    depends | recommends | suggests) ;;
    none) continue ;;
    *) echo "gst-deps: $table: $element: need must be depends, recommends, suggests or none (got '$need')" >&2; exit 2 ;;
  esac
  if [ -z "${pkg:-}" ]; then
    if [ -z "${cache[$plugin]:-}" ]; then
      file=$(gst-inspect-1.0 "$plugin" </dev/null 2>/dev/null | awk '$1 == "Filename" && !f {print $2; f=1}' || true)
      if [ -z "$file" ]; then
        echo "gst-deps: the GStreamer plugin '$plugin' ($element) is not installed on this host: run scripts/install-deps.sh" >&2
        exit 1
      fi
      owner=$(dpkg-query -S "$file" 2>/dev/null || dpkg-query -S "$(readlink -f "$file")" 2>/dev/null || true)
      if [ -z "$owner" ]; then
        echo "gst-deps: no Debian package owns $file (plugin '$plugin'): install GStreamer from Debian's packages" >&2
        exit 1
      fi
      cache[$plugin]=${owner%%:*}
    fi
    pkg=${cache[$plugin]}
  fi
  case ",${want[$need]}," in *",$pkg,"*) ;; *) want[$need]+=${want[$need]:+,}$pkg ;; esac
done <"$table"
# A package needed by a "depends" element is not repeated as a recommendation.
for n in recommends suggests; do
  keep=()
  IFS=, read -ra ps <<<"${want[$n]}"
  for p in "${ps[@]}"; do
    case ",${want[depends]}," in *",$p,"*) ;; *) keep+=("$p") ;; esac
  done
  want[$n]=$(IFS=,; echo "${keep[*]}")
done
for n in depends recommends suggests; do
  echo "$n: $(sed 's/,/, /g' <<<"${want[$n]}")"
done
