package soak

import (
	"bytes"
	"encoding/xml"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// healthy is a 30-minute run sampled every 10 s of an agent that does its job: flat RSS,
// goroutines and files (with the noise of viewers coming and going), a motion event every
// 30 s, credentials rotating every 4 minutes, a localcloud restart at 15:30.
func healthy() Observed {
	var r Observed
	r.CredentialLifetime = 5 * time.Minute
	r.RestartDown, r.RestartUp = 15*time.Minute+30*time.Second, 15*time.Minute+40*time.Second
	for t := time.Duration(0); t <= 30*time.Minute; t += 10 * time.Second {
		s := nanSample(t)
		viewers := float64(1 + int(t/time.Minute)%3)
		s.RSSMB = 120 + 2*viewers
		s.RSSAnonMB, s.RSSFileMB, s.GoHeapMB = s.RSSMB-60, 60, 15+viewers
		s.Goroutines = 100 + 10*viewers
		s.FDs = 40 + 4*viewers
		s.Threads = 20
		s.SpoolBytes, s.SpoolFragments = 1e5, 1
		s.Segments = 30
		s.Viewers, s.DriverViewers = viewers, viewers
		s.MotionEvents = float64(t / (30 * time.Second))
		s.BrokerEvents = s.MotionEvents
		s.KVSFragments = float64(t / (2 * time.Second))
		s.CredExpiryS = (5*time.Minute - t%(4*time.Minute)).Seconds()
		s.CloudConnected, s.CloudUp = 1, 1
		if t >= r.RestartDown && t < r.RestartUp+10*time.Second {
			s.CloudConnected = 0
		}
		s.Load1 = 3
		r.Samples = append(r.Samples, s)
	}
	for k := range 30 {
		r.Viewers = append(r.Viewers, ViewerRecord{ID: "v", Joined: time.Duration(k) * time.Minute, Video: time.Second, Attempts: 1, Frames: 800})
	}
	return r
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Observed)
		want   string // a failure's text; "" passes
	}{
		{"healthy", func(*Observed) {}, ""},
		{"RSS grows 1 MB a minute", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].RSSMB += r.Samples[i].T.Minutes()
			}
		}, "rss_mb grew"},
		{"a goroutine leaked per viewer", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].Goroutines += 3 * math.Floor(r.Samples[i].T.Minutes())
			}
		}, "goroutines grew"},
		{"a file leaked per segment", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].FDs += float64(r.Samples[i].T / (10 * time.Second))
			}
		}, "open_fds grew"},
		{"one outlier sample is not growth", func(r *Observed) {
			r.Samples[len(r.Samples)-2].RSSMB *= 3
		}, ""},
		{"the agent exited", func(r *Observed) { r.AgentExit = "at 12m: signal: killed" }, "the agent exited before the end"},
		{"unclean shutdown", func(r *Observed) { r.Shutdown = "exit status 1" }, "did not shut down cleanly"},
		{"a viewer without video", func(r *Observed) {
			r.Viewers[7].Video, r.Viewers[7].Err = -1, "no keyframe: context deadline exceeded"
		}, "never got video"},
		{"motion stops at 20 min", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].MotionEvents = math.Min(r.Samples[i].MotionEvents, 40)
				r.Samples[i].BrokerEvents = r.Samples[i].MotionEvents
			}
		}, "motion events stopped"},
		{"motion events lost on the way", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].BrokerEvents = math.Min(r.Samples[i].BrokerEvents, 30)
			}
		}, "motion events lost"},
		{"credentials never rotate", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].CredExpiryS = 3600 - r.Samples[i].T.Seconds()
			}
		}, "no credential rotation"},
		{"KVS uploads stop at the restart", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].KVSFragments = math.Min(r.Samples[i].KVSFragments, 460)
			}
		}, "no fragment reached its KVS"},
		{"MQTT never reconnects", func(r *Observed) {
			for i := range r.Samples {
				if r.Samples[i].T >= r.RestartDown {
					r.Samples[i].CloudConnected = 0
				}
			}
		}, "never reconnected to MQTT"},
		{"the spool fills", func(r *Observed) {
			for i := range r.Samples {
				r.Samples[i].SpoolFragments = math.Floor(r.Samples[i].T.Minutes())
			}
		}, "spool does not drain"},
		{"too few samples", func(r *Observed) { r.Samples = r.Samples[:1] }, "only 1 samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := healthy()
			tt.change(&r)
			v := Judge(r, CriteriaFor(30*time.Minute))
			if tt.want == "" {
				require.True(t, v.Pass, v.String())
				require.Empty(t, v.Failures)
				require.Len(t, v.Growth, 3)
				require.True(t, strings.HasPrefix(v.String(), "PASS\n"))
				return
			}
			require.False(t, v.Pass)
			require.Contains(t, strings.Join(v.Failures, "\n"), tt.want)
			require.True(t, strings.HasPrefix(v.String(), "FAIL\n"))
		})
	}
}

func TestJudgeGrowthFigures(t *testing.T) {
	r := healthy()
	for i := range r.Samples {
		if r.Samples[i].T >= 27*time.Minute {
			r.Samples[i].RSSMB = 140 // baseline median 124 (viewers 1, 2, 3 -> 122, 124, 126)
		}
	}
	v := Judge(r, CriteriaFor(30*time.Minute))
	require.False(t, v.Pass)
	require.Equal(t, "rss_mb", v.Growth[0].Metric)
	require.InDelta(t, 124, v.Growth[0].Baseline, 0.01)
	require.InDelta(t, 140, v.Growth[0].Final, 0.01)
	require.InDelta(t, 16.0/124, v.Growth[0].Fraction, 1e-9)
	require.False(t, v.Growth[0].OK)
	require.True(t, v.Growth[1].OK)
	require.Contains(t, v.String(), "+12.9 %  TOO MUCH")
	require.Equal(t, []string{"rss_mb grew +12.9 % (median 124.0 over 5m0s-8m0s, 140.0 over 27m0s-30m0s; limit +10 %)"}, v.Failures)
}

func TestCSVRoundTripAndPlot(t *testing.T) {
	r := healthy()
	r.Samples[3].Goroutines = math.NaN() // a failed scrape
	path := t.TempDir() + "/samples.csv"
	w, err := newCSVWriter(path)
	require.NoError(t, err)
	for _, s := range r.Samples {
		require.NoError(t, w.write(s))
	}
	require.NoError(t, w.close())
	data, err := readFile(path)
	require.NoError(t, err)
	got, err := ReadCSV(bytes.NewReader(data))
	require.NoError(t, err)
	require.Len(t, got, len(r.Samples))
	require.True(t, math.IsNaN(got[3].Goroutines))
	require.Equal(t, r.Samples[10].T, got[10].T)
	require.Equal(t, r.Samples[10].RSSMB, got[10].RSSMB)
	require.Equal(t, r.Samples[10].CredExpiryS, got[10].CredExpiryS)

	var svg bytes.Buffer
	require.NoError(t, Plot(&svg, "title <&>\nsecond line", got, r, CriteriaFor(30*time.Minute)))
	// Well-formed XML, one labelled panel per column, data drawn, the missing value a gap.
	dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	polylines, texts := 0, map[string]bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "polyline" {
				polylines++
			}
		case xml.CharData:
			texts[string(el)] = true
		}
	}
	require.True(t, texts["title <&>"], "the title, escaped")
	for _, c := range columns {
		label := c.name
		if c.unit != "" {
			label += " (" + c.unit + ")"
		}
		require.True(t, texts[label], "panel %s", label)
	}
	require.Equal(t, len(columns)+1, polylines, "one line per panel, goroutines' broken by the missing sample")

	_, err = ReadCSV(strings.NewReader("a,b\n1,2\n"))
	require.ErrorContains(t, err, "no t_s column")
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 87
edgecam_spool_bytes 1.2345e+06
edgecam_kvs_acks_total{type="PERSISTED"} 10
edgecam_kvs_acks_total{type="RECEIVED"} 12
edgecam_build_info{version="v1 {x}"} 1
`))
	require.NoError(t, err)
	require.Equal(t, 87.0, metric(m, "go_goroutines"))
	require.Equal(t, 1234500.0, metric(m, "edgecam_spool_bytes"))
	require.Equal(t, 22.0, metric(m, "edgecam_kvs_acks_total"), "summed over labels")
	require.Equal(t, 1.0, metric(m, "edgecam_build_info"))
	require.True(t, math.IsNaN(metric(m, "edgecam_viewers")))
}

func TestLongestGap(t *testing.T) {
	tests := []struct {
		at   []time.Duration
		want time.Duration
	}{
		{nil, 10 * time.Minute},
		{[]time.Duration{time.Minute}, 10 * time.Minute},                      // before the window: ignored
		{[]time.Duration{5 * time.Minute, 6 * time.Minute}, 9 * time.Minute},  // 6 to 15
		{[]time.Duration{7 * time.Minute, 14 * time.Minute}, 7 * time.Minute}, // 7 to 14
		{[]time.Duration{9 * time.Minute, 12 * time.Minute}, 4 * time.Minute}, // 5 to 9
		{[]time.Duration{6 * time.Minute, 10 * time.Minute}, 5 * time.Minute}, // 10 to 15
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, longestGap(tt.at, 5*time.Minute, 15*time.Minute), "%v", tt.at)
	}
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
