package motion_test

import (
	"fmt"
	"log"
	"time"

	"github.com/edgecam/edgecam/motion"
)

// scene draws a 320x180 GRAY8 frame: a grey gradient, brightened by light, with a white
// 24x24 square at x, y when x >= 0.
func scene(light, x, y int) []byte {
	f := make([]byte, 320*180)
	for i := range f {
		f[i] = byte(min(40+(i%320)/2+(i/320)/3+light, 255))
	}
	for yy := y; x >= 0 && yy < y+24; yy++ {
		for xx := x; xx < x+24; xx++ {
			f[yy*320+xx] = 255
		}
	}
	return f
}

func ExampleDetector() {
	d, err := motion.NewDetector(motion.Options{
		Width: 320, Height: 180, // the size of the GRAY8 frames, one byte per pixel
		Sensitivity: 0.5,
		// Ignore the camera's timestamp overlay in the top left corner.
		MaskUnits: motion.Normalized,
		Masks:     []motion.Rect{{X: 0, Y: 0, W: 0.4, H: 0.15}},
	})
	if err != nil {
		log.Fatal(err)
	}
	show := func(name string, frame []byte) {
		r, err := d.Process(frame)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%-12s warmup=%-5v motion=%-5v illumination=%-5v area=%.4f score=%.2f\n",
			name, r.Warmup, r.Motion, r.Illumination, r.Area, r.Score)
	}
	for range motion.DefaultWarmupFrames {
		d.Process(scene(0, -1, 0)) // learn the empty scene
	}
	show("empty", scene(0, -1, 0))
	show("square", scene(0, 100, 100)) // seen once: not motion yet (rain is seen once too)
	show("square moved", scene(0, 130, 100))
	show("in the mask", scene(0, 10, 0))
	show("lights on", scene(60, -1, 0))
	show("lit, empty", scene(60, -1, 0))
	// Output:
	// empty        warmup=false motion=false illumination=false area=0.0000 score=0.00
	// square       warmup=false motion=false illumination=false area=0.0000 score=0.49
	// square moved warmup=false motion=true  illumination=false area=0.0124 score=0.95
	// in the mask  warmup=false motion=false illumination=false area=0.0000 score=0.00
	// lights on    warmup=false motion=false illumination=true  area=0.0000 score=0.00
	// lit, empty   warmup=false motion=false illumination=false area=0.0000 score=0.00
}

func ExampleGate() {
	g, err := motion.NewGate(motion.GateOptions{
		StartFrames: 2,               // two motion frames in a row start an event
		PostRoll:    3 * time.Second, // it ends 3 s after the last motion
		PreRoll:     2 * time.Second, // recordings begin 2 s before the motion
		EventGap:    4 * time.Second, // motion less than 4 s after an end continues the event
	})
	if err != nil {
		log.Fatal(err)
	}
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// One frame per second: motion at 2-4 s, a blip at 8 s, motion again at 10-11 s.
	pattern := "..MMM...M.MM.............."
	for i, c := range pattern {
		t := t0.Add(time.Duration(i) * time.Second)
		e, ok := g.Update(t, motion.Result{Motion: c == 'M', Score: 0.7, Area: 0.02})
		if !ok {
			continue
		}
		switch e.Kind {
		case motion.EventStart:
			fmt.Printf("%s start: motion since %s, record from %s\n",
				t.Format("15:04:05"), e.Start.Format("15:04:05"), e.PreRollFrom.Format("15:04:05"))
		case motion.EventEnd:
			fmt.Printf("%s end: motion %s to %s, peak score %.1f\n",
				t.Format("15:04:05"), e.Start.Format("15:04:05"), e.End.Format("15:04:05"), e.PeakScore)
		}
	}
	// Output:
	// 12:00:03 start: motion since 12:00:02, record from 12:00:00
	// 12:00:18 end: motion 12:00:02 to 12:00:14, peak score 0.7
}
