package motioneval

import (
	"encoding/json"
	"fmt"
	"os"
)

// ReadLabels reads labelled motion intervals: a clip sidecar ({"motion": [{"start", "end"}]})
// or a bare list of intervals, in seconds.
func ReadLabels(path string) ([]Interval, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sidecar struct {
		Motion *[]Interval `json:"motion"`
	}
	if err := json.Unmarshal(data, &sidecar); err == nil && sidecar.Motion != nil {
		return append([]Interval{}, *sidecar.Motion...), nil
	}
	var list []Interval
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("labels %s: want {\"motion\": [{\"start\": 5, \"end\": 9}]} or [{\"start\": 5, \"end\": 9}] (%v)", path, err)
	}
	if list == nil {
		list = []Interval{}
	}
	return list, nil
}
