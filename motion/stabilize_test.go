package motion

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// fullSearch is bestShift without its shortcuts: every shift's whole sum, in ascending
// order, ties to 0 and then to the smaller shift.
func fullSearch(cur, ref []int32, r int) int {
	n := len(ref)
	if n < 4*r+8 {
		return 0
	}
	sad := func(s int) int64 {
		var sum int64
		for x := r; x < n-r; x++ {
			sum += int64(abs(cur[x+s] - ref[x]))
		}
		return sum
	}
	sad0 := sad(0)
	if 2*sad0 < min(sad(-1), sad(1)) {
		return 0
	}
	best, bestSAD := 0, sad0
	for s := -r; s <= r; s++ {
		if v := sad(s); s != 0 && v < bestSAD {
			best, bestSAD = s, v
		}
	}
	if best != 0 && bestSAD*8 > sad0*7 {
		return 0
	}
	return best
}

// TestBestShiftMatchesFullSearch: the early stops and the search order of bestShift and
// sadInt32 change nothing: shifted gradients with noise, flat ones full of ties, ramps,
// and lengths that are not multiples of the 16-value chunks.
func TestBestShiftMatchesFullSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		n := 20 + rng.IntN(400)
		r := 1 + rng.IntN(6)
		spread := []int32{1, 2, 3, 50, 30000}[i%5]
		ref := make([]int32, n)
		for x := range ref {
			ref[x] = rng.Int32N(2*spread+1) - spread
		}
		shift := rng.IntN(2*r+1) - r
		cur := make([]int32, n)
		for x := range cur {
			cur[x] = ref[min(max(x-shift, 0), n-1)] + rng.Int32N(3) - 1
			if i%7 == 0 {
				cur[x] = int32(x % 3) // ties everywhere
			}
		}
		require.Equal(t, fullSearch(cur, ref, r), bestShift(cur, ref, r), "case %d: n %d, r %d, shift %d", i, n, r, shift)
	}
}

// TestBlocksAtShiftAreBlockSums: the block means of differences at a shift are exactly the
// block sums read there, for every block shiftFits samples (whole, inside the frame at
// both places), so that shiftFits may take either side from cur.
func TestBlocksAtShiftAreBlockSums(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for _, sz := range [][3]int{{320, 180, 320}, {318, 178, 320}, {64, 48, 64}, {101, 37, 104}} {
		d, err := NewDetector(Options{Width: sz[0], Height: sz[1], Stride: sz[2]})
		require.NoError(t, err)
		frame := make([]byte, sz[2]*sz[1])
		for i := range frame {
			frame[i] = byte(rng.IntN(256))
		}
		for sy := -4; sy <= 4; sy++ {
			for sx := -4; sx <= 4; sx++ {
				d.differences(frame, sx, sy, false)
				for k, c := range d.cur {
					x0, y0 := k%d.bw*blk, k/d.bw*blk
					if x0+sx < 0 || y0+sy < 0 || x0+sx+blk > d.w || y0+sy+blk > d.h || x0+blk > d.w || y0+blk > d.h {
						continue
					}
					require.Equal(t, blockSum(frame, d.stride, x0+sx, y0+sy), c, "%v, shift %d,%d, block %d", sz, sx, sy, k)
				}
			}
		}
	}
}

// TestProjectionsAreSums: the SWAR projections (the block pass's, the shaking camera's
// projections pass, and the plain one for frames too wide to fuse) are the exact column
// and row sums they stand for, on random frames and on white ones, whose sums fill the
// 16-bit lanes most.
func TestProjectionsAreSums(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	for _, sz := range [][3]int{{320, 180, 320}, {318, 178, 320}, {101, 37, 104}, {1024, 1040, 1024}, {1100, 60, 1104}, {12, 7, 12}} {
		for _, white := range []bool{false, true} {
			w, h, stride := sz[0], sz[1], sz[2]
			d, err := NewDetector(Options{Width: w, Height: h, Stride: stride})
			require.NoError(t, err)
			frame := make([]byte, stride*h)
			for i := range frame {
				frame[i] = byte(rng.IntN(256))
				if white {
					frame[i] = 255
				}
			}
			st := &d.stab
			// What the projections stand for: fused, the whole 8-pixel words of the full
			// rows of blocks, columns over every other row of blocks; otherwise everything.
			want := func() (col, row []int32) {
				col, row = make([]int32, st.w), make([]int32, st.h)
				for y := range st.h {
					for x := range st.w {
						p := int32(frame[y*stride+x])
						row[y] += p
						if !st.fused || y/blk%2 == 0 {
							col[x] += p
						}
					}
				}
				return col, row
			}
			col, row := want()
			name := func(how string) string { return how + " " + fmtSize(sz) + map[bool]string{true: " white"}[white] }
			if !st.fused {
				st.project(frame, stride)
				require.Equal(t, col, st.col, name("project"))
				require.Equal(t, row, st.row, name("project"))
				continue
			}
			d.differences(frame, 0, 0, true)
			st.gradients()
			require.Equal(t, col, st.col, name("block pass"))
			require.Equal(t, row, st.row, name("block pass"))
			clear(st.col)
			clear(st.row)
			d.projections(frame)
			st.gradients()
			require.Equal(t, col, st.col, name("projections"))
			require.Equal(t, row, st.row, name("projections"))
		}
	}
}

func fmtSize(sz [3]int) string {
	return fmt.Sprintf("%dx%d stride %d", sz[0], sz[1], sz[2])
}

// TestRasterMatchesDivision: raster.at gives the column and row a division would, for
// increasing indices with gaps of any size.
func TestRasterMatchesDivision(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 9))
	for _, bw := range []int{1, 3, 80, 81} {
		r := raster{bw: bw}
		for k := 0; k < 5000; k += 1 + rng.IntN(3*bw) {
			x, y := r.at(k)
			require.Equal(t, [2]int{k % bw, k / bw}, [2]int{x, y}, "bw %d, k %d", bw, k)
		}
	}
}
