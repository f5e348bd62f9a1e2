package motion

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgecam/edgecam/internal/synthscene"
	"github.com/stretchr/testify/require"
)

// outdoorRun renders a synthscene scene at half size (320x180) and 5 analysis frames per
// second, as the agent's analysis branch would, and runs the detector and the gate.
type outdoorRun struct {
	results []Result
	times   []float64
	events  []Event // end events
}

func halfSize(src []byte, w, h int, dst []byte) {
	for y := range h / 2 {
		for x := range w / 2 {
			i := 2*y*w + 2*x
			dst[y*(w/2)+x] = byte((int(src[i]) + int(src[i+1]) + int(src[i+w]) + int(src[i+w+1]) + 2) / 4)
		}
	}
}

func runOutdoor(t testing.TB, s synthscene.Scene, o Options) outdoorRun {
	t.Helper()
	d, err := NewDetector(o)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGate(GateOptions{StartFrames: 2, PreRoll: 3 * time.Second, PostRoll: 4 * time.Second, EventGap: 6 * time.Second})
	r := synthscene.NewRenderer(s)
	var full []byte
	half := make([]byte, (s.W/2)*(s.H/2))
	var out outdoorRun
	t0 := time.Unix(0, 0)
	step := s.FPS / 5
	for i := 0; i < s.Frames; i += step {
		full = r.Frame(i, full)
		halfSize(full, s.W, s.H, half)
		res, err := d.Process(half)
		if err != nil {
			t.Fatal(err)
		}
		sec := float64(i) / float64(s.FPS)
		out.results = append(out.results, res)
		out.times = append(out.times, sec)
		if ev, ok := g.Update(t0.Add(time.Duration(sec*float64(time.Second))), res); ok && ev.Kind == EventEnd {
			out.events = append(out.events, ev)
		}
	}
	if ev, ok := g.Flush(t0.Add(time.Duration(float64(s.Frames) / float64(s.FPS) * float64(time.Second)))); ok {
		out.events = append(out.events, ev)
	}
	return out
}

// TestOutdoorScenes runs the detector and the gate on the outdoor scenes straight from the
// renderer (no encoder), at 320x180 and 5 frames per second: labelled motion starts an
// event within 0.6 s, nothing else does. motioneval's TestOutdoorSuite runs the same scenes
// encoded; this one shows the detector alone. It renders about 3000 frames: long.
func TestOutdoorScenes(t *testing.T) {
	if os.Getenv("EDGECAM_LONG_TESTS") != "1" {
		t.Skip("renders the whole outdoor suite (about 1-2 minutes): set EDGECAM_LONG_TESTS=1")
	}
	for _, s := range synthscene.Suite() {
		t.Run(s.Name, func(t *testing.T) {
			r := runOutdoor(t, s, Options{})
			var timeline strings.Builder
			for _, res := range r.results {
				switch {
				case res.Warmup:
					timeline.WriteByte('w')
				case res.Illumination:
					timeline.WriteByte('I')
				case res.Motion:
					timeline.WriteByte('M')
				case res.Score > 0:
					timeline.WriteByte('-')
				default:
					timeline.WriteByte('.')
				}
			}
			t.Logf("labels %v\n%s", s.Labels, timeline.String())
			if len(s.Labels) == 0 {
				require.Empty(t, r.events)
				return
			}
			require.NotEmpty(t, r.events)
			for _, l := range s.Labels {
				found := false
				for _, e := range r.events {
					start := e.Start.Sub(time.Unix(0, 0)).Seconds()
					end := e.End.Sub(time.Unix(0, 0)).Seconds()
					if start < l.End && end > l.Start {
						found = true
						require.LessOrEqual(t, start-l.Start, 0.6, "latency")
					} else {
						t.Errorf("event %.1f-%.1f s outside the labels", start, end)
					}
				}
				require.True(t, found, "label %v", l)
			}
		})
	}
}
