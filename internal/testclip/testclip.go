// Package testclip finds the generated test clips (make testdata) for tests, generating them
// with scripts/gen-testdata.sh when they are missing.
package testclip

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Ball is the default clip: 640x360, 15 fps, 30 s, 2 s GOP, a ball moving in known intervals.
const Ball = "ball-640x360-15fps-30s"

// The motion suite: 640x360, 15 fps, 2 s GOP, a static SMPTE-bars scene and one change.
const (
	MotionObject    = "motion-object-300s"    // a ball moving 150-155 s and 230-233 s
	MotionSmallSlow = "motion-small-slow-60s" // a small ball creeping 20-40 s
	MotionLighting  = "motion-lighting-60s"   // lights on at 20 s, off at 40 s; nothing moves
	MotionIRSwitch  = "motion-ir-switch-60s"  // grey IR-like picture 20-40 s; nothing moves
	MotionNoise     = "motion-noise-60s"      // sensor-like noise only
)

// The outdoor motion suite (issue 11): textured scenes rendered by internal/synthscene,
// 640x360, 10 fps, 36 s, 2 s GOP; "-object" clips add a person crossing (labelled).
const (
	OutdoorSway             = "outdoor-sway"
	OutdoorSwayObject       = "outdoor-sway-object"
	OutdoorRainFine         = "outdoor-rain-fine"
	OutdoorRainFineObject   = "outdoor-rain-fine-object"
	OutdoorRainCoarse       = "outdoor-rain-coarse"
	OutdoorRainCoarseObject = "outdoor-rain-coarse-object"
	OutdoorFoliage          = "outdoor-foliage"
	OutdoorFoliageObject    = "outdoor-foliage-object"
	OutdoorHeadlights       = "outdoor-headlights"
	OutdoorHeadlightsObject = "outdoor-headlights-object"
	OutdoorClouds           = "outdoor-clouds"
	OutdoorCloudsObject     = "outdoor-clouds-object"
	OutdoorQuiet            = "outdoor-quiet"
	OutdoorPersonSmall      = "outdoor-person-small" // a 7x16 px person walking 12-24 s
	OutdoorCat              = "outdoor-cat"          // a cat-sized animal trotting 14-19 s
)

// OutdoorSuite lists the outdoor clips.
var OutdoorSuite = []string{
	OutdoorSway, OutdoorSwayObject, OutdoorRainFine, OutdoorRainFineObject, OutdoorRainCoarse,
	OutdoorRainCoarseObject, OutdoorFoliage, OutdoorFoliageObject, OutdoorHeadlights, OutdoorHeadlightsObject,
	OutdoorClouds, OutdoorCloudsObject, OutdoorQuiet, OutdoorPersonSmall, OutdoorCat,
}

// Live720 is a 720p30 stream at about 2 Mbit/s (a ball over light noise), 20 s, 2 s GOP.
const Live720 = "live-1280x720-30fps-20s"

// Suite lists the motion suite's clips.
var Suite = []string{MotionObject, MotionSmallSlow, MotionLighting, MotionIRSwitch, MotionNoise}

// Interval is a labelled span of a clip, in seconds.
type Interval struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// Sidecar is the JSON description written next to each clip.
type Sidecar struct {
	File       string     `json:"file"`
	Width      int        `json:"width"`
	Height     int        `json:"height"`
	FPS        int        `json:"fps"`
	GOPSeconds float64    `json:"gop_seconds"`
	Duration   float64    `json:"duration_seconds"`
	Frames     int        `json:"frames"`
	Motion     []Interval `json:"motion"`
	Kind       string     `json:"kind,omitempty"`
}

// Root returns the repository root (the directory holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load returns the path of clip name and its sidecar, generating the clips first if needed.
func Load(name string) (string, Sidecar, error) {
	root, err := Root()
	if err != nil {
		return "", Sidecar{}, err
	}
	dir := filepath.Join(root, "testdata", "clips")
	clip := filepath.Join(dir, name+".mp4")
	side := filepath.Join(dir, name+".json")
	if err := generate(root, dir, clip, side); err != nil {
		return "", Sidecar{}, err
	}
	data, err := os.ReadFile(side)
	if err != nil {
		return "", Sidecar{}, err
	}
	var sc Sidecar
	if err := json.Unmarshal(data, &sc); err != nil {
		return "", Sidecar{}, fmt.Errorf("%s: %w", side, err)
	}
	return clip, sc, nil
}

// Path is Load for tests: it fails the test when the clip cannot be had.
func Path(t testing.TB, name string) (string, Sidecar) {
	t.Helper()
	clip, sc, err := Load(name)
	if err != nil {
		t.Fatalf("test clip %s: %v (run make testdata)", name, err)
	}
	return clip, sc
}

// generate runs the generator under a file lock, so that test packages running in parallel
// do not generate the same clips at once.
func generate(root, dir, clip, side string) error {
	if exists(clip) && exists(side) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	if exists(clip) && exists(side) {
		return nil
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "gen-testdata.sh"), dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/gen-testdata.sh: %w\n%s", err, out)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
