package localcloud

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/edgecam/edgecam/localcloud/mkv"
	"github.com/stretchr/testify/require"
)

// archivedPost is a read-side call signed as AWS's SDKs sign it.
func archivedPost(ctx context.Context, t *testing.T, c *Cloud, op string, in any) *http.Response {
	t.Helper()
	body, err := json.Marshal(in)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.KVSEndpoint()+"/"+op, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(ctx, viewerCreds(t, c), req, hex.EncodeToString(sum[:]), "kinesisvideo", c.Region(), time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

// recordClip puts the test clip into stream as three fragments and returns their numbers
// and the producer timestamp of the first frame.
func recordClip(t *testing.T, c *Cloud, stream string) ([]string, int64) {
	t.Helper()
	createStream(t, c, stream, 24)
	frames, track := testFrames(t)
	base := time.Now().Add(-10 * time.Second).UnixMilli()
	header, clusters := producerMKV(frames, track, base)
	pm := openPutMedia(t, c, stream, issuedCreds(c))
	pm.write(t, header)
	var numbers []string
	for i, cl := range clusters {
		pm.write(t, cl)
		if i > 0 {
			numbers = append(numbers, pm.expectFragment(t, clusterTimecode(t, clusters[i-1])))
		}
	}
	pm.write(t, mkv.TagsElement([]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_END_OF_FRAGMENT"}}))
	numbers = append(numbers, pm.expectFragment(t, clusterTimecode(t, clusters[len(clusters)-1])))
	pm.w.Close()
	return numbers, base + frames[0].ptsMs
}

func countBlocks(t *testing.T, r io.Reader) (blocks int, tags map[string][]string) {
	t.Helper()
	tags = map[string][]string{}
	d := mkv.NewDemuxer(r, mkv.Limits{})
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return
		}
		require.NoError(t, err)
		switch ev.Kind {
		case mkv.EventBlock:
			blocks++
		case mkv.EventTags:
			for _, tg := range ev.Tags {
				tags[tg.Name] = append(tags[tg.Name], tg.Value)
			}
		}
	}
}

func TestKVSReadSide(t *testing.T) {
	c := start(t, Options{})
	numbers, first := recordClip(t, c, "cam")
	ctx := ctxT(t)
	rangeSel := map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange": map[string]any{"StartTimestamp": float64(first-1000) / 1000, "EndTimestamp": float64(first+60_000) / 1000}}

	t.Run("ListFragments", func(t *testing.T) {
		resp := archivedPost(ctx, t, c, "listFragments", map[string]any{"StreamName": "cam", "FragmentSelector": rangeSel})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var out struct {
			Fragments []fragmentWire
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Len(t, out.Fragments, 3)
		for i, f := range out.Fragments {
			require.Equal(t, numbers[i], f.FragmentNumber)
			require.InDelta(t, float64(first)/1000+float64(2*i), f.ProducerTimestamp, 0.1)
			require.InDelta(t, float64(time.Now().UnixMilli())/1000, f.ServerTimestamp, 30)
			require.InDelta(t, 2000, f.FragmentLengthInMilliseconds, 100)
			require.Positive(t, f.FragmentSizeInBytes)
		}
		// Paged.
		resp2 := archivedPost(ctx, t, c, "listFragments", map[string]any{"StreamName": "cam", "MaxResults": 2})
		defer resp2.Body.Close()
		var page struct {
			Fragments []fragmentWire
			NextToken string
		}
		require.NoError(t, json.NewDecoder(resp2.Body).Decode(&page))
		require.Len(t, page.Fragments, 2)
		require.NotEmpty(t, page.NextToken)
	})

	t.Run("GetMediaForFragmentList", func(t *testing.T) {
		resp := archivedPost(ctx, t, c, "getMediaForFragmentList", map[string]any{"StreamName": "cam", "Fragments": numbers})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		blocks, tags := countBlocks(t, resp.Body)
		require.Equal(t, 90, blocks)
		require.Equal(t, numbers, tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"])
		require.Len(t, tags["AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP"], 3)
	})

	t.Run("GetMedia EARLIEST then live", func(t *testing.T) {
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		resp := archivedPost(gctx, t, c, "getMedia", map[string]any{"StreamName": "cam", "StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		d := mkv.NewDemuxer(bufio.NewReader(resp.Body), mkv.Limits{})
		var got []string
		for len(got) < 3 {
			ev, err := d.Next()
			require.NoError(t, err)
			if ev.Kind == mkv.EventTags {
				for _, tg := range ev.Tags {
					if tg.Name == "AWS_KINESISVIDEO_CONTINUATION_TOKEN" {
						got = append(got, tg.Value)
					}
				}
			}
		}
		require.Equal(t, numbers, got)
	})

	t.Run("GetClip", func(t *testing.T) {
		resp := archivedPost(ctx, t, c, "getClip", map[string]any{"StreamName": "cam", "ClipFragmentSelector": rangeSel})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "video/mp4", resp.Header.Get("Content-Type"))
		file := filepath.Join(t.TempDir(), "clip.mp4")
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(file, data, 0o644))
		probeFrames(t, file, 90)

		empty := archivedPost(ctx, t, c, "getClip", map[string]any{"StreamName": "cam", "ClipFragmentSelector": map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
			"TimestampRange": map[string]any{"StartTimestamp": 1000, "EndTimestamp": 2000}}})
		defer empty.Body.Close()
		require.Equal(t, 404, empty.StatusCode)
		require.Equal(t, "ResourceNotFoundException", empty.Header.Get("x-amzn-ErrorType"))
	})

	t.Run("HLS ON_DEMAND", func(t *testing.T) {
		resp := archivedPost(ctx, t, c, "getHLSStreamingSessionURL", map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
			"HLSFragmentSelector": rangeSel, "ContainerFormat": "FRAGMENTED_MP4"})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var out struct{ HLSStreamingSessionURL string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Contains(t, out.HLSStreamingSessionURL, "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=")
		get := func(u string) []byte {
			r, err := http.Get(u)
			require.NoError(t, err)
			defer r.Body.Close()
			require.Equal(t, 200, r.StatusCode, u)
			b, err := io.ReadAll(r.Body)
			require.NoError(t, err)
			return b
		}
		base := out.HLSStreamingSessionURL[:strings.LastIndex(out.HLSStreamingSessionURL, "/")+1]
		master := string(get(out.HLSStreamingSessionURL))
		require.Contains(t, master, "#EXT-X-STREAM-INF")
		require.Contains(t, master, "RESOLUTION=320x180")
		var mediaURL string
		for _, l := range strings.Split(master, "\n") {
			if strings.HasPrefix(l, "getHLSMediaPlaylist") {
				mediaURL = base + l
			}
		}
		playlist := string(get(mediaURL))
		require.Contains(t, playlist, "#EXT-X-ENDLIST")
		var mp4 []byte
		for _, l := range strings.Split(playlist, "\n") {
			if strings.HasPrefix(l, "#EXT-X-MAP:URI=\"") {
				mp4 = append(mp4, get(base+strings.TrimSuffix(strings.TrimPrefix(l, "#EXT-X-MAP:URI=\""), "\""))...)
			}
			if strings.HasPrefix(l, "getMP4MediaFragment") {
				mp4 = append(mp4, get(base+l)...)
			}
		}
		file := filepath.Join(t.TempDir(), "hls.mp4")
		require.NoError(t, os.WriteFile(file, mp4, 0o644))
		probeFrames(t, file, 90)
	})

	t.Run("ListFragments by server timestamp", func(t *testing.T) {
		now := float64(time.Now().UnixMilli()) / 1000
		resp := archivedPost(ctx, t, c, "listFragments", map[string]any{"StreamName": "cam", "FragmentSelector": map[string]any{
			"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": map[string]any{"StartTimestamp": now - 60, "EndTimestamp": now + 60}}})
		defer resp.Body.Close()
		var out struct{ Fragments []fragmentWire }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Len(t, out.Fragments, 3)
	})

	t.Run("GetMedia CONTINUATION_TOKEN", func(t *testing.T) {
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		resp := archivedPost(gctx, t, c, "getMedia", map[string]any{"StreamName": "cam", "StartSelector": map[string]any{
			"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": numbers[0]}})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		d := mkv.NewDemuxer(bufio.NewReader(resp.Body), mkv.Limits{})
		for {
			ev, err := d.Next()
			require.NoError(t, err)
			if ev.Kind == mkv.EventTags && ev.Tags[0].Name == "AWS_KINESISVIDEO_FRAGMENT_NUMBER" {
				require.Equal(t, numbers[1], ev.Tags[0].Value, "the fragment after the token comes first")
				return
			}
		}
	})

	t.Run("HLS LIVE", func(t *testing.T) {
		resp := archivedPost(ctx, t, c, "getHLSStreamingSessionURL", map[string]any{"StreamName": "cam"})
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		var out struct{ HLSStreamingSessionURL string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		r, err := http.Get(strings.Replace(out.HLSStreamingSessionURL, "getHLSMasterPlaylist", "getHLSMediaPlaylist", 1) + "&TrackNumber=1")
		require.NoError(t, err)
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		require.NotContains(t, string(b), "#EXT-X-ENDLIST", "a live playlist has no end")
		require.Equal(t, 3, strings.Count(string(b), "getMP4MediaFragment.mp4"))
	})

	t.Run("errors", func(t *testing.T) {
		createStream(t, c, "no-retention", 0)
		for _, tc := range []struct {
			op       string
			in       map[string]any
			status   int
			errorTyp string
		}{
			{"getHLSStreamingSessionURL", map[string]any{"StreamName": "cam", "PlaybackMode": "LIVE", "HLSFragmentSelector": rangeSel}, 400, "InvalidArgumentException"},
			{"getHLSStreamingSessionURL", map[string]any{"StreamName": "cam", "ContainerFormat": "MPEG_TS"}, 400, "InvalidArgumentException"},
			{"getClip", map[string]any{"StreamName": "no-retention", "ClipFragmentSelector": rangeSel}, 400, "NoDataRetentionException"},
			{"getClip", map[string]any{"StreamName": "missing", "ClipFragmentSelector": rangeSel}, 404, "ResourceNotFoundException"},
			{"listFragments", map[string]any{"StreamName": "cam", "FragmentSelector": map[string]any{"FragmentSelectorType": "ARRIVAL"}}, 400, "InvalidArgumentException"},
			{"getMedia", map[string]any{"StreamName": "cam", "StartSelector": map[string]any{"StartSelectorType": "SOMETIME"}}, 400, "InvalidArgumentException"},
			{"getMediaForFragmentList", map[string]any{"StreamName": "cam", "Fragments": []string{"123"}}, 404, "ResourceNotFoundException"},
		} {
			resp := archivedPost(ctx, t, c, tc.op, tc.in)
			resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode, "%s %v", tc.op, tc.in)
			require.Equal(t, tc.errorTyp, resp.Header.Get("x-amzn-ErrorType"), "%s %v", tc.op, tc.in)
		}
	})
}
