#!/usr/bin/env bash
# gen-testdata.sh generates edgecam's test clips with gst-launch: deterministic H.264
# (x264, no B-frames, fixed GOP, no scene-cut keyframes) in MP4, each with a JSON sidecar
# that lists its motion intervals in seconds. Clips are generated, never committed.
#
# usage: scripts/gen-testdata.sh [--clean] [OUT_DIR]   (default testdata/clips)
#   --clean  removes the clips first (the generator changed), under the same lock.
set -euo pipefail

clean=""
if [ "${1:-}" = "--clean" ]; then
  clean=1
  shift
fi
out=${1:-testdata/clips}
mkdir -p "$out"
# One generator at a time per directory: two at once (parallel makes, tests) wrote the same
# temporary files and left a corrupt clip behind. The second waits, then finds the clips made.
exec 9>"$out/.lock"
flock 9
if [ -n "$clean" ]; then
  rm -f "$out"/*.mp4 "$out"/*.json
fi

# clip NAME WIDTH HEIGHT FPS GOP_SECONDS SCHEDULE
# SCHEDULE is a list of "static:SECONDS" and "moving:SECONDS" parts played in order. A
# static part shows the ball frozen; a moving part shows videotestsrc's moving ball.
clip() {
  local name=$1 w=$2 h=$3 fps=$4 gop=$5
  shift 5
  local file="$out/$name.mp4" sidecar="$out/$name.json"
  if [ -f "$file" ] && [ -f "$sidecar" ]; then
    return
  fi
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

# encode NAME DESCRIPTION-PARTS... runs gst-launch with the given source parts feeding an
# element named "enc_in" and writes NAME.mp4 (x264, no B-frames, 2 s GOP at 15 fps).
encode() {
  local name=$1
  shift
  local file="$out/$name.mp4"
  gst-launch-1.0 -q -e "$@" \
    enc_in. ! videoconvert ! video/x-raw,format=I420 ! \
    x264enc bframes=0 key-int-max=30 threads=1 speed-preset=veryfast bitrate=1000 option-string=scenecut=0 ! \
    video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$file.tmp.mp4"
  ffmpeg -v error -y -i "$file.tmp.mp4" -c copy -map_metadata -1 -fflags +bitexact \
    -flags:v +bitexact -movflags +faststart "$file.tmp2.mp4"
  rm "$file.tmp.mp4"
  mv "$file.tmp2.mp4" "$file"
}

# sidecar NAME DURATION KIND MOTION-JSON writes NAME.json for a 640x360 15 fps clip.
sidecar() {
  cat >"$out/$1.json" <<JSON
{
  "file": "$1.mp4",
  "kind": "$3",
  "width": 640,
  "height": 360,
  "fps": 15,
  "gop_seconds": 2,
  "duration_seconds": $2,
  "frames": $(($2 * 15)),
  "motion": [$4]
}
JSON
}

# The dry-run's default clip: a static scene with a ball moving from 5 to 9 s and 16 to 21 s.
clip ball-640x360-15fps-30s 640 360 15 2 static:5 moving:4 static:7 moving:5 static:9

# The motion suite (motion eval, issue tests). Every clip is 640x360 at 15 fps over a static
# SMPTE-bars scene; what changes is said in its name and labelled in its sidecar.
scene="video/x-raw,width=640,height=360,framerate=15/1,pixel-aspect-ratio=1/1"
still() { # still FRAMES [videobalance properties]: the scene, frozen, optionally re-lit
  local n=$1
  shift
  if [ $# -gt 0 ]; then
    echo "videotestsrc pattern=smpte num-buffers=1 ! $scene ! videobalance $* ! imagefreeze num-buffers=$n ! $scene"
  else
    echo "videotestsrc pattern=smpte num-buffers=1 ! $scene ! imagefreeze num-buffers=$n ! $scene"
  fi
}
# ball W H PARTS...: a ball in a transparent W x H box, static or moving per part (as clip()).
ball() {
  local w=$1 h=$2
  shift 2
  local caps="video/x-raw,format=BGRA,width=$w,height=$h,framerate=15/1,pixel-aspect-ratio=1/1"
  local src="videotestsrc pattern=ball background-color=0x00000000"
  local parts=""
  for part in "$@"; do
    local kind=${part%%:*} n=$((${part#*:} * 15))
    if [ "$kind" = static ]; then
      parts="$parts $src num-buffers=1 ! $caps ! imagefreeze num-buffers=$n ! $caps ! b."
    else
      parts="$parts $src num-buffers=$n ! $caps ! b."
    fi
  done
  echo "concat name=b ! queue ! mix.sink_1 $parts"
}

if [ ! -f "$out/motion-object-300s.mp4" ] || [ ! -f "$out/motion-object-300s.json" ]; then
  echo "gen-testdata: $out/motion-object-300s.mp4 (a 160x120 ball moving 150-155 s and 230-233 s)"
  # shellcheck disable=SC2046 # the parts are gst-launch words
  encode motion-object-300s compositor name=mix sink_1::xpos=300 sink_1::ypos=150 ! $scene ! identity name=enc_in \
    $(still 4500) ! mix.sink_0 $(ball 160 120 static:150 moving:5 static:75 moving:3 static:67)
  sidecar motion-object-300s 300 object '{"start": 150, "end": 155}, {"start": 230, "end": 233}'
fi
if [ ! -f "$out/motion-small-slow-60s.mp4" ] || [ ! -f "$out/motion-small-slow-60s.json" ]; then
  echo "gen-testdata: $out/motion-small-slow-60s.mp4 (a small ball creeping 20-40 s)"
  # shellcheck disable=SC2046
  encode motion-small-slow-60s compositor name=mix sink_1::xpos=420 sink_1::ypos=60 ! $scene ! identity name=enc_in \
    $(still 900) ! mix.sink_0 $(ball 48 36 static:20 moving:20 static:20)
  sidecar motion-small-slow-60s 60 small-slow '{"start": 20, "end": 40}'
fi
if [ ! -f "$out/motion-lighting-60s.mp4" ] || [ ! -f "$out/motion-lighting-60s.json" ]; then
  echo "gen-testdata: $out/motion-lighting-60s.mp4 (lights on at 20 s, off at 40 s; nothing moves)"
  # shellcheck disable=SC2046
  encode motion-lighting-60s concat name=enc_in \
    $(still 300) ! enc_in. $(still 300 brightness=0.3 contrast=1.2) ! enc_in. $(still 300) ! enc_in.
  sidecar motion-lighting-60s 60 lighting ''
fi
if [ ! -f "$out/motion-ir-switch-60s.mp4" ] || [ ! -f "$out/motion-ir-switch-60s.json" ]; then
  echo "gen-testdata: $out/motion-ir-switch-60s.mp4 (grey IR picture 20-40 s; nothing moves)"
  # shellcheck disable=SC2046
  encode motion-ir-switch-60s concat name=enc_in \
    $(still 300) ! enc_in. $(still 300 saturation=0 contrast=0.6 brightness=0.15) ! enc_in. $(still 300) ! enc_in.
  sidecar motion-ir-switch-60s 60 ir-switch ''
fi
if [ ! -f "$out/motion-noise-60s.mp4" ] || [ ! -f "$out/motion-noise-60s.json" ]; then
  echo "gen-testdata: $out/motion-noise-60s.mp4 (sensor-like noise only)"
  # shellcheck disable=SC2046
  encode motion-noise-60s compositor name=mix sink_1::alpha=0.08 ! $scene ! identity name=enc_in \
    $(still 900) ! mix.sink_0 videotestsrc pattern=snow num-buffers=900 ! $scene ! mix.sink_1
  sidecar motion-noise-60s 60 noise ''
fi

# The outdoor motion suite (issue 11): textured scenes rendered by internal/synthscene
# (go run ./scripts/synthclip) and piped as raw I420 into x264 — camera sway, fine rain,
# coarse rain or snow, a bush in the wind, headlights sweeping a wall at night and cloud
# shadows, each without and with a person crossing, plus a small distant person, a cat and
# a quiet scene. 640x360, 10 fps, 36 s, 2 s GOP. The clips are remade when the generator's
# sources change (their hash is kept in .synth-version).
synth_version=$(cat scripts/gen-testdata.sh internal/synthscene/*.go scripts/synthclip/*.go 2>/dev/null | sha256sum | cut -c1-16)
if [ "$(cat "$out/.synth-version" 2>/dev/null)" != "$synth_version" ]; then
  rm -f "$out"/outdoor-*.mp4 "$out"/outdoor-*.json
fi
synthclip="$out/.synthclip"
synth_start=$(date +%s)
synth_built=""
while read -r name w h fps frames <&3; do
  if [ -f "$out/$name.mp4" ] && [ -f "$out/$name.json" ]; then
    continue
  fi
  if [ -z "$synth_built" ]; then
    go build -o "$synthclip" ./scripts/synthclip
    synth_built=1
  fi
  echo "gen-testdata: $out/$name.mp4 (${w}x${h} ${fps} fps, $((frames / fps)) s, synthetic outdoor scene)"
  "$synthclip" -scene "$name" -sidecar "$out/$name.json.tmp" | gst-launch-1.0 -q -e fdsrc fd=0 ! \
    rawvideoparse width="$w" height="$h" framerate="$fps/1" format=i420 ! \
    x264enc bframes=0 key-int-max=$((2 * fps)) threads=1 speed-preset=veryfast bitrate=800 option-string=scenecut=0 ! \
    video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$out/$name.tmp.mp4"
  ffmpeg -nostdin -v error -y -i "$out/$name.tmp.mp4" -c copy -map_metadata -1 -fflags +bitexact \
    -flags:v +bitexact -movflags +faststart "$out/$name.tmp2.mp4"
  rm "$out/$name.tmp.mp4"
  mv "$out/$name.tmp2.mp4" "$out/$name.mp4"
  mv "$out/$name.json.tmp" "$out/$name.json"
done 3< <(go run ./scripts/synthclip -list)
echo "$synth_version" >"$out/.synth-version"
if [ -n "$synth_built" ]; then
  rm -f "$synthclip"
  echo "gen-testdata: outdoor suite in $(($(date +%s) - synth_start)) s"
fi

# A 720p30 stream at about 2 Mbit/s (a ball over light noise), for the live-view load
# benchmark, served over RTSP and passed through.
if [ ! -f "$out/live-1280x720-30fps-20s.mp4" ] || [ ! -f "$out/live-1280x720-30fps-20s.json" ]; then
  echo "gen-testdata: $out/live-1280x720-30fps-20s.mp4 (720p30, 2 Mbit/s, 20 s)"
  hd="video/x-raw,width=1280,height=720,framerate=30/1,pixel-aspect-ratio=1/1"
  gst-launch-1.0 -q -e compositor name=mix sink_1::alpha=0.12 ! $hd ! videoconvert ! video/x-raw,format=I420 ! \
    x264enc bframes=0 key-int-max=60 threads=2 speed-preset=veryfast bitrate=2000 option-string=scenecut=0 ! \
    video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location="$out/live.tmp.mp4" \
    videotestsrc pattern=ball num-buffers=600 ! $hd ! mix.sink_0 \
    videotestsrc pattern=snow num-buffers=600 ! $hd ! mix.sink_1
  ffmpeg -v error -y -i "$out/live.tmp.mp4" -c copy -map_metadata -1 -fflags +bitexact -flags:v +bitexact \
    -movflags +faststart "$out/live-1280x720-30fps-20s.mp4"
  rm "$out/live.tmp.mp4"
  cat >"$out/live-1280x720-30fps-20s.json" <<JSON
{"file": "live-1280x720-30fps-20s.mp4", "kind": "live", "width": 1280, "height": 720, "fps": 30, "gop_seconds": 2,
 "duration_seconds": 20, "frames": 600, "motion": [{"start": 0, "end": 20}]}
JSON
fi

echo "gen-testdata: done"
