package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edgecam/edgecam/config"
	"github.com/edgecam/edgecam/media/gst"
	"go.uber.org/zap"
)

// recoverSegments repairs what a crash or power cut left in dir: the segments that were
// being written (the newest two: one being finalised, one open) are checked and, when cut
// short, rewritten with every complete frame they hold (a clean file that plays to its
// end without a complaint); a segment without any complete frame is deleted. It runs once,
// before recording starts.
func recoverSegments(dir, format string, log *zap.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type seg struct {
		path string
		mod  time.Time
		size int64
	}
	var segs []seg
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), "."+format) {
			continue
		}
		if strings.HasSuffix(e.Name(), recoveringSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		segs = append(segs, seg{path: filepath.Join(dir, e.Name()), mod: info.ModTime(), size: info.Size()})
	}
	// Left-overs of a recovery that was itself cut short.
	if stale, _ := filepath.Glob(filepath.Join(dir, "*"+recoveringSuffix)); len(stale) > 0 {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].mod.Before(segs[b].mod) })
	for i, s := range segs {
		if s.size < minSegmentBytes {
			if os.Remove(s.path) == nil {
				log.Warn("deleted a segment cut short before its first frame (crash or power cut)", zap.String("file", s.path), zap.Int64("bytes", s.size))
			}
			continue
		}
		if i < len(segs)-2 || finalised(s.path, format) {
			continue
		}
		frames, err := rewriteSegment(s.path, format)
		switch {
		case err != nil:
			log.Warn("a segment cut short by a crash or power cut could not be repaired; it is left as it is", zap.String("file", s.path), zap.Error(err))
		case frames == 0:
			if os.Remove(s.path) == nil {
				log.Warn("deleted a segment cut short before its first complete frame (crash or power cut)", zap.String("file", s.path))
			}
		default:
			log.Info("repaired a segment cut short by a crash or power cut: it plays up to its last complete frame",
				zap.String("file", s.path), zap.Int("frames", frames))
		}
	}
}

// recoveringSuffix marks the temporary file of a repair.
const recoveringSuffix = ".recovering"

// finalised reports whether a segment was closed properly: a Matroska file's Segment has
// its size written in (finalisation replaces "unknown") and the file holds all of it; a
// fragmented MP4 ends with its 'mfro' box.
func finalised(path, format string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false
	}
	if format == config.FormatMP4 {
		b := make([]byte, 12)
		if info.Size() < 12 {
			return false
		}
		if _, err := f.ReadAt(b, info.Size()-12); err != nil {
			return false
		}
		return string(b[:4]) == "mfro"
	}
	head := make([]byte, 256)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	head = head[:n]
	// EBML header: ID 1A45DFA3, size, data; then the Segment: ID 18538067, size.
	if !bytes.HasPrefix(head, []byte{0x1A, 0x45, 0xDF, 0xA3}) {
		return false
	}
	size, l, unknown := ebmlVint(head[4:])
	if l == 0 || unknown {
		return false
	}
	pos := 4 + l + int(size)
	if pos+4 > len(head) || !bytes.Equal(head[pos:pos+4], []byte{0x18, 0x53, 0x80, 0x67}) {
		return false
	}
	size, l, unknown = ebmlVint(head[pos+4:])
	if l == 0 || unknown {
		return false
	}
	return int64(pos+4+l)+int64(size) <= info.Size()
}

// ebmlVint decodes an EBML variable-length size: its value, its length in bytes (0 when
// invalid) and whether it is the reserved "unknown size".
func ebmlVint(b []byte) (v uint64, n int, unknown bool) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0, false
	}
	n = 1
	for mask := byte(0x80); b[0]&mask == 0; mask >>= 1 {
		n++
	}
	if len(b) < n {
		return 0, 0, false
	}
	v = uint64(b[0] & (0xFF >> n))
	allOnes := v == uint64(0xFF>>n)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xFF
	}
	return v, n, allOnes
}

// rewriteSegment remuxes every complete frame of path into a new file that replaces it,
// and returns how many frames it holds.
func rewriteSegment(path, format string) (int, error) {
	mux := "matroskamux"
	if format == config.FormatMP4 {
		mux = fmt.Sprintf("mp4mux fragment-duration=%d", mp4FragmentMillis)
	}
	tmp := path + recoveringSuffix
	desc := fmt.Sprintf("filesrc location=%s ! parsebin ! h264parse ! tee name=t "+
		"t. ! queue ! %s ! filesink location=%s t. ! queue ! appsink name=count sync=false",
		quote(path), mux, quote(tmp))
	p, err := gst.Parse(desc, gst.Options{Name: "recover"})
	if err != nil {
		return 0, err
	}
	frames := 0
	if err := p.OnSample("count", func(gst.Sample) { frames++ }); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, gst.ErrEOS) {
		_ = os.Remove(tmp)
		if err == nil {
			err = errors.New("timed out")
		}
		return 0, err
	}
	if frames == 0 {
		_ = os.Remove(tmp)
		return 0, nil
	}
	if err := syncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	return frames, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
