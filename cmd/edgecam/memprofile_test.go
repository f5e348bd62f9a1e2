package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMemProfileRateOffUnlessGODEBUGSetsIt(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    int
	}{
		{godebug: "", want: 0},
		{godebug: "madvdontneed=1", want: 0},
		{godebug: "memprofilerate=1", want: 1},
		{godebug: "gctrace=1,memprofilerate=524288", want: 524288},
		{godebug: "memprofilerate=bad", want: 0},
	} {
		require.Equal(t, tc.want, memProfileRate(tc.godebug), "GODEBUG=%q", tc.godebug)
	}
}
