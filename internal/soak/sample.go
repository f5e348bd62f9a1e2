package soak

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sample is one look at the agent process and what it produced. Values that could not be
// read are NaN (written empty in the CSV, left out of medians and the plot).
type Sample struct {
	T              time.Duration // since the agent started
	RSSMB          float64       // VmRSS
	RSSAnonMB      float64       // RssAnon: heaps (Go's and C's), stacks
	RSSFileMB      float64       // RssFile: mapped binary, libraries and files
	GoHeapMB       float64       // go_memstats_heap_inuse_bytes
	Goroutines     float64       // go_goroutines
	FDs            float64       // entries in /proc/<pid>/fd
	Threads        float64       // Threads in /proc/<pid>/status (GStreamer's included)
	SpoolBytes     float64       // edgecam_spool_bytes (waiting for KVS; before 2026-12-02 the files on disk)
	SpoolFragments float64       // edgecam_spool_fragments
	Segments       float64       // segment files in the recordings directory
	Viewers        float64       // edgecam_viewers (the agent's count)
	DriverViewers  float64       // viewers the driver holds with video
	MotionEvents   float64       // edgecam_motion_events_total (started, agent side)
	BrokerEvents   float64       // distinct motion messages (start and end) seen on localcloud's broker
	KVSFragments   float64       // fragments localcloud's KVS persisted (summed over its restarts)
	CredExpiryS    float64       // edgecam_credentials_expiry_seconds
	CloudConnected float64       // edgecam_cloud_connected
	CloudUp        float64       // 1 while the driver's localcloud runs
	Load1          float64       // the machine's 1-minute load average
}

// column is one CSV column and plot panel.
type column struct {
	name, unit string
	get        func(*Sample) *float64
}

var columns = []column{
	{"rss_mb", "MB", func(s *Sample) *float64 { return &s.RSSMB }},
	{"rss_anon_mb", "MB", func(s *Sample) *float64 { return &s.RSSAnonMB }},
	{"rss_file_mb", "MB", func(s *Sample) *float64 { return &s.RSSFileMB }},
	{"go_heap_mb", "MB in use", func(s *Sample) *float64 { return &s.GoHeapMB }},
	{"goroutines", "", func(s *Sample) *float64 { return &s.Goroutines }},
	{"open_fds", "", func(s *Sample) *float64 { return &s.FDs }},
	{"threads", "", func(s *Sample) *float64 { return &s.Threads }},
	{"spool_bytes", "waiting", func(s *Sample) *float64 { return &s.SpoolBytes }},
	{"spool_fragments", "", func(s *Sample) *float64 { return &s.SpoolFragments }},
	{"segments", "files", func(s *Sample) *float64 { return &s.Segments }},
	{"viewers", "agent", func(s *Sample) *float64 { return &s.Viewers }},
	{"driver_viewers", "with video", func(s *Sample) *float64 { return &s.DriverViewers }},
	{"motion_events", "started", func(s *Sample) *float64 { return &s.MotionEvents }},
	{"broker_events", "messages", func(s *Sample) *float64 { return &s.BrokerEvents }},
	{"kvs_fragments", "persisted", func(s *Sample) *float64 { return &s.KVSFragments }},
	{"cred_expiry_s", "s", func(s *Sample) *float64 { return &s.CredExpiryS }},
	{"cloud_connected", "", func(s *Sample) *float64 { return &s.CloudConnected }},
	{"cloud_up", "", func(s *Sample) *float64 { return &s.CloudUp }},
	{"load1", "", func(s *Sample) *float64 { return &s.Load1 }},
}

func nanSample(t time.Duration) Sample {
	s := Sample{T: t}
	for _, c := range columns {
		*c.get(&s) = math.NaN()
	}
	return s
}

// csvWriter writes samples as they come, so that an interrupted soak leaves its data.
type csvWriter struct {
	f *os.File
	w *csv.Writer
}

func newCSVWriter(path string) (*csvWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("soak: samples file: %w", err)
	}
	w := csv.NewWriter(f)
	head := []string{"t_s"}
	for _, c := range columns {
		head = append(head, c.name)
	}
	if err := w.Write(head); err != nil {
		f.Close()
		return nil, err
	}
	w.Flush()
	return &csvWriter{f: f, w: w}, w.Error()
}

func (c *csvWriter) write(s Sample) error {
	row := []string{strconv.FormatFloat(s.T.Seconds(), 'f', 1, 64)}
	for _, col := range columns {
		v := *col.get(&s)
		if math.IsNaN(v) {
			row = append(row, "")
		} else {
			row = append(row, strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	if err := c.w.Write(row); err != nil {
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

func (c *csvWriter) close() error { return c.f.Close() }

// ReadCSV reads samples written by a soak run (to re-plot or re-judge one).
func ReadCSV(r io.Reader) ([]Sample, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("soak: samples: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("soak: samples: empty file")
	}
	idx := map[string]int{}
	for i, h := range rows[0] {
		idx[h] = i
	}
	if _, ok := idx["t_s"]; !ok {
		return nil, fmt.Errorf("soak: samples: no t_s column in the header %v", rows[0])
	}
	var out []Sample
	for n, row := range rows[1:] {
		t, err := strconv.ParseFloat(row[idx["t_s"]], 64)
		if err != nil {
			return nil, fmt.Errorf("soak: samples line %d: t_s: %w", n+2, err)
		}
		s := nanSample(time.Duration(t * float64(time.Second)))
		for _, c := range columns {
			i, ok := idx[c.name]
			if !ok || i >= len(row) || row[i] == "" {
				continue
			}
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil {
				return nil, fmt.Errorf("soak: samples line %d: %s: %w", n+2, c.name, err)
			}
			*c.get(&s) = v
		}
		out = append(out, s)
	}
	return out, nil
}

// procStatus reads VmRSS, RssAnon and RssFile (MB) and Threads from /proc/<pid>/status.
func procStatus(pid int, s *Sample) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			s.RSSMB = v / 1024
		case "RssAnon:":
			s.RSSAnonMB = v / 1024
		case "RssFile:":
			s.RSSFileMB = v / 1024
		case "Threads:":
			s.Threads = v
		}
	}
	return sc.Err()
}

// openFDs counts /proc/<pid>/fd.
func openFDs(pid int) float64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return math.NaN()
	}
	return float64(len(ents))
}

// load1 is the 1-minute load average.
func load1() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// countFiles counts the regular files ending in ext under dir (recursively).
func countFiles(dir, ext string) float64 {
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a file deleted while walking (the janitor) is not an error
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), "."+ext) {
			n++
		}
		return nil
	})
	if err != nil {
		return math.NaN()
	}
	return float64(n)
}

// scrape reads the agent's Prometheus text exposition into name -> value (series of one
// family summed over their labels).
func scrape(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// metric returns m[name], NaN when absent.
func metric(m map[string]float64, name string) float64 {
	if v, ok := m[name]; ok {
		return v
	}
	return math.NaN()
}
