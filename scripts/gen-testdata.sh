#!/usr/bin/env bash
# gen-testdata.sh generates edgecam's test clips with gst-launch: deterministic H.264
# (x264, no B-frames, fixed GOP, no scene-cut keyframes) in MP4, each with a JSON sidecar
# that lists its motion intervals in seconds. Clips are generated, never committed.
#
# usage: scripts/gen-testdata.sh [OUT_DIR]   (default testdata/clips)
set -euo pipefail

out=${1:-testdata/clips}
mkdir -p "$out"

# clip NAME WIDTH HEIGHT FPS GOP_SECONDS SCHEDULE
# SCHEDULE is a list of "static:SECONDS" and "moving:SECONDS" parts played in order. A
# static part shows the ball frozen; a moving part shows videotestsrc's moving ball.
clip() {
  local name=$1 w=$2 h=$3 fps=$4 gop=$5
  shift 5
  local file="$out/$name.mp4" sidecar="$out/$name.json"
  local caps="video/x-raw,format=I420,width=$w,height=$h,framerate=$fps/1,pixel-aspect-ratio=1/1"
  local branches=() motion=() t=0 frames=0
  for part in "$@"; do
    local kind=${part%%:*} secs=${part#*:}
    local n=$((secs * fps))
    case $kind in
      static) branches+=(videotestsrc pattern=ball num-buffers=1 ! "$caps" ! imagefreeze num-buffers=$n ! "$caps" ! c.) ;;
      moving)
        branches+=(videotestsrc pattern=ball num-buffers=$n ! "$caps" ! c.)
        motion+=("{\"start\": $t, \"end\": $((t + secs))}")
        ;;
      *) echo "gen-testdata: unknown part '$part'" >&2; exit 2 ;;
    esac
    t=$((t + secs))
    frames=$((frames + n))
  done

  echo "gen-testdata: $file (${w}x${h} ${fps} fps, ${t} s, GOP ${gop} s)"
  gst-launch-1.0 -q -e concat name=c ! videoconvert ! \
    x264enc bframes=0 key-int-max=$((gop * fps)) threads=1 option-string=scenecut=0 ! \
    video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$file.tmp.mp4" \
    "${branches[@]}"
  # mp4mux stamps the current time into the file; a bit-exact remux makes clips reproducible.
  ffmpeg -v error -y -i "$file.tmp.mp4" -c copy -map_metadata -1 -fflags +bitexact \
    -flags:v +bitexact -movflags +faststart "$file.tmp2.mp4"
  rm "$file.tmp.mp4"
  mv "$file.tmp2.mp4" "$file"

  local joined
  joined=$(IFS=,; echo "${motion[*]}")
  cat >"$sidecar" <<JSON
{
  "file": "$name.mp4",
  "width": $w,
  "height": $h,
  "fps": $fps,
  "gop_seconds": $gop,
  "duration_seconds": $t,
  "frames": $frames,
  "motion": [$joined]
}
JSON
}

# The dry-run's default clip: a static scene with a ball moving from 5 to 9 s and 16 to 21 s.
clip ball-640x360-15fps-30s 640 360 15 2 static:5 moving:4 static:7 moving:5 static:9

echo "gen-testdata: done"
