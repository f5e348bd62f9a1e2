// Command synthclip writes one outdoor test scene of internal/synthscene as raw I420 video
// on its standard output, for gst-launch to encode (scripts/gen-testdata.sh), and the
// clip's JSON sidecar. -list prints the suite's scene names.
//
// usage: go run ./scripts/synthclip -list
//
//	go run ./scripts/synthclip -scene NAME -sidecar OUT.json | gst-launch-1.0 fdsrc ! rawvideoparse ...
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/edgecam/edgecam/internal/synthscene"
)

func main() {
	list := flag.Bool("list", false, "print the scene names with width, height, fps and frames")
	name := flag.String("scene", "", "the scene to render")
	sidecar := flag.String("sidecar", "", "write the clip's JSON sidecar here")
	gop := flag.Int("gop", 2, "GOP length in seconds, for the sidecar")
	flag.Parse()
	if err := run(*list, *name, *sidecar, *gop); err != nil {
		fmt.Fprintln(os.Stderr, "synthclip:", err)
		os.Exit(1)
	}
}

func run(list bool, name, sidecar string, gop int) error {
	if list {
		for _, s := range synthscene.Suite() {
			fmt.Printf("%s %d %d %d %d\n", s.Name, s.W, s.H, s.FPS, s.Frames)
		}
		return nil
	}
	s, err := synthscene.Find(name)
	if err != nil {
		return fmt.Errorf("%w: run with -list for the names", err)
	}
	if sidecar != "" {
		side := map[string]any{
			"file": s.Name + ".mp4", "kind": s.Kind, "width": s.W, "height": s.H, "fps": s.FPS,
			"gop_seconds": gop, "duration_seconds": float64(s.Frames) / float64(s.FPS), "frames": s.Frames,
			"motion": s.Labels,
		}
		data, err := json.MarshalIndent(side, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(sidecar, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	r := synthscene.NewRenderer(s)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	chroma := make([]byte, (s.W/2)*(s.H/2)*2)
	for i := range chroma {
		chroma[i] = 128
	}
	var y []byte
	for i := range s.Frames {
		y = r.Frame(i, y)
		if _, err := out.Write(y); err != nil {
			return err
		}
		if _, err := out.Write(chroma); err != nil {
			return err
		}
	}
	return out.Flush()
}
