package motioneval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// UnmarshalJSON reads an interval written as {"start": 5, "end": 9} or as [5, 9].
func (iv *Interval) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var pair []float64
		if err := json.Unmarshal(data, &pair); err != nil {
			return err
		}
		if len(pair) != 2 {
			return fmt.Errorf("interval %s has %d numbers: write [start, end]", data, len(pair))
		}
		iv.Start, iv.End = pair[0], pair[1]
		return nil
	}
	var obj struct {
		Start *float64 `json:"start"`
		End   *float64 `json:"end"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	if obj.Start == nil || obj.End == nil {
		return fmt.Errorf("interval %s needs both start and end", data)
	}
	iv.Start, iv.End = *obj.Start, *obj.End
	return nil
}

// ReadLabels reads labelled motion intervals, in seconds from the start of the video: a
// clip sidecar ({"motion": [{"start": 5, "end": 9}]} or {"motion": [[5, 9]]}) or a bare
// list of intervals in either form.
func ReadLabels(path string) ([]Interval, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const want = `want {"motion": [{"start": 5, "end": 9}]}, {"motion": [[5, 9]]} or a bare list of either`
	var list []Interval
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var sidecar struct {
			Motion *[]Interval `json:"motion"`
		}
		if err := json.Unmarshal(trimmed, &sidecar); err != nil {
			return nil, fmt.Errorf("labels %s: %v: %s", path, err, want)
		}
		if sidecar.Motion == nil {
			return nil, fmt.Errorf("labels %s: no \"motion\" list: %s", path, want)
		}
		list = *sidecar.Motion
	default:
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return nil, fmt.Errorf("labels %s: %v: %s", path, err, want)
		}
	}
	for i, l := range list {
		if math.IsNaN(l.Start) || math.IsNaN(l.End) || math.IsInf(l.Start, 0) || math.IsInf(l.End, 0) || l.Start < 0 || l.End <= l.Start {
			return nil, fmt.Errorf("labels %s: interval %d (%g to %g s) is invalid: start must be 0 or more and end after start", path, i+1, l.Start, l.End)
		}
	}
	return append([]Interval{}, list...), nil
}
