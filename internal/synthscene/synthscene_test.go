package synthscene

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSuiteIsDeterministicAndLabelled: every scene renders the same bytes for the same
// frame, scenes differ from frame to frame, labels lie inside the clip, names are unique.
func TestSuiteIsDeterministicAndLabelled(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Suite() {
		require.False(t, seen[s.Name], s.Name)
		seen[s.Name] = true
		dur := float64(s.Frames) / float64(s.FPS)
		for _, l := range s.Labels {
			require.True(t, l.Start >= 0 && l.End > l.Start && l.End <= dur, "%s %v", s.Name, l)
		}
		require.Equal(t, s.Object != "", len(s.Labels) > 0, s.Name)
		a, b := NewRenderer(s), NewRenderer(s)
		i := s.Frames / 2
		fa, fb := a.Frame(i, nil), b.Frame(i, nil)
		require.Len(t, fa, s.W*s.H)
		require.True(t, bytes.Equal(fa, fb), "%s frame %d differs between renders", s.Name, i)
		require.False(t, bytes.Equal(fa, a.Frame(i+1, nil)), "%s: sensor noise changes every frame", s.Name)
	}
	_, err := Find("no-such-scene")
	require.ErrorContains(t, err, "no scene")
}
