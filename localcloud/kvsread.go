package localcloud

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/edgecam/edgecam/localcloud/fmp4"
	"github.com/edgecam/edgecam/localcloud/mkv"
	"go.uber.org/zap"
)

// The read side as AWS's SDKs call it: ListFragments, GetMediaForFragmentList and GetClip
// (kinesis-video-archived-media), GetMedia (kinesis-video-media), each a SigV4-signed POST
// of JSON; timestamps are epoch seconds (numbers), as AWS's REST-JSON protocol writes them.

// readRoutes adds the read side.
func (s *streamService) readRoutes(mux *http.ServeMux) {
	mux.Handle("/listFragments", s.k.controlPlane("ListFragments", func() any { return &listFragmentsInput{} }, s.listFragments))
	mux.Handle("/getMediaForFragmentList", s.mediaCall("GetMediaForFragmentList", func() any { return &fragmentListInput{} }, s.getMediaForFragmentList))
	mux.Handle("/getMedia", s.mediaCall("GetMedia", func() any { return &getMediaInput{} }, s.getMedia))
	mux.Handle("/getClip", s.mediaCall("GetClip", func() any { return &getClipInput{} }, s.getClip))
	mux.Handle("/getHLSStreamingSessionURL", s.k.controlPlane("GetHLSStreamingSessionURL", func() any { return &hlsSessionInput{} }, s.getHLSStreamingSessionURL))
	mux.HandleFunc("/hls/v1/", s.serveHLS)
}

// mediaCall is controlPlane for operations that answer with media: once the request is
// checked, the handler writes the answer itself.
func (s *streamService) mediaCall(op string, in func() any, do func(w http.ResponseWriter, r *http.Request, in any) *awsError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, aerr := s.signedJSON(op, r, in())
		if aerr == nil {
			aerr = do(w, r, req)
		}
		if aerr != nil {
			s.log.Info("refused", zap.String("op", op), zap.String("error_type", aerr.Type), zap.String("message", aerr.Message))
			aerr.write(w)
		}
	}
}

// signedJSON checks a signed POST and decodes its JSON body into req.
func (s *streamService) signedJSON(op string, r *http.Request, req any) (any, *awsError) {
	if r.Method != http.MethodPost {
		return nil, serviceError(http.StatusMethodNotAllowed, "MethodNotAllowedException", "%s takes POST", op)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, serviceError(http.StatusBadRequest, "SerializationException", "unreadable body: %v", err)
	}
	if _, aerr := s.k.verifier.verifyHeader(r, body); aerr != nil {
		return nil, aerr
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, req); err != nil {
			return nil, serviceError(http.StatusBadRequest, "SerializationException", "unreadable JSON body: %v", err)
		}
	}
	return req, nil
}

// epochSeconds is a timestamp as AWS's JSON protocol writes it.
type epochSeconds float64

func (e epochSeconds) time() time.Time {
	sec, frac := math.Modf(float64(e))
	return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond))
}

func toEpoch(ms int64) float64 { return float64(ms) / 1000 }

type timestampRange struct {
	StartTimestamp *epochSeconds `json:"StartTimestamp"`
	EndTimestamp   *epochSeconds `json:"EndTimestamp"`
}

type fragmentSelector struct {
	FragmentSelectorType string          `json:"FragmentSelectorType"`
	TimestampRange       *timestampRange `json:"TimestampRange"`
}

// fragmentTime is the timestamp a selector type looks at.
func fragmentTime(f storedFragment, selectorType string) int64 {
	if selectorType == "SERVER_TIMESTAMP" {
		return f.ServerMs
	}
	return f.ProducerMs
}

func checkSelectorType(t string) *awsError {
	if t != "PRODUCER_TIMESTAMP" && t != "SERVER_TIMESTAMP" {
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP, not %q", t)
	}
	return nil
}

// inRange filters fragments: startsIn keeps those starting in [start, end]; otherwise those
// overlapping it (a fragment that starts before start and runs past it is included).
func inRange(list []storedFragment, selectorType string, start, end *time.Time, startsIn bool) []storedFragment {
	var out []storedFragment
	for _, f := range list {
		from := fragmentTime(f, selectorType)
		to := from + max(f.DurationMs, 1)
		if startsIn {
			to = from
		}
		if start != nil && to < start.UnixMilli() {
			continue
		}
		if end != nil && from > end.UnixMilli() {
			continue
		}
		out = append(out, f)
	}
	if selectorType == "SERVER_TIMESTAMP" {
		sort.SliceStable(out, func(i, j int) bool { return out[i].ServerMs < out[j].ServerMs })
	}
	return out
}

func (r *timestampRange) bounds() (start, end *time.Time, aerr *awsError) {
	if r == nil {
		return nil, nil, nil
	}
	if r.StartTimestamp != nil {
		t := r.StartTimestamp.time()
		start = &t
	}
	if r.EndTimestamp != nil {
		t := r.EndTimestamp.time()
		end = &t
	}
	if start != nil && end != nil && end.Before(*start) {
		return nil, nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "EndTimestamp must not be before StartTimestamp")
	}
	return start, end, nil
}

type listFragmentsInput struct {
	streamRef
	MaxResults       int               `json:"MaxResults"`
	NextToken        string            `json:"NextToken"`
	FragmentSelector *fragmentSelector `json:"FragmentSelector"`
}

type fragmentWire struct {
	FragmentLengthInMilliseconds int64   `json:"FragmentLengthInMilliseconds"`
	FragmentNumber               string  `json:"FragmentNumber"`
	FragmentSizeInBytes          int64   `json:"FragmentSizeInBytes"`
	ProducerTimestamp            float64 `json:"ProducerTimestamp"`
	ServerTimestamp              float64 `json:"ServerTimestamp"`
}

func (s *streamService) listFragments(_ *http.Request, v any) (any, *awsError) {
	in := v.(*listFragmentsInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	if in.MaxResults == 0 {
		in.MaxResults = 1000
	}
	if in.MaxResults < 1 || in.MaxResults > 1000 {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "MaxResults must be between 1 and 1000")
	}
	list, _ := s.media.fragments(st.Name)
	if sel := in.FragmentSelector; sel != nil {
		if aerr := checkSelectorType(sel.FragmentSelectorType); aerr != nil {
			return nil, aerr
		}
		if sel.TimestampRange == nil || sel.TimestampRange.StartTimestamp == nil || sel.TimestampRange.EndTimestamp == nil {
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "FragmentSelector needs a TimestampRange with StartTimestamp and EndTimestamp")
		}
		start, end, aerr := sel.TimestampRange.bounds()
		if aerr != nil {
			return nil, aerr
		}
		list = inRange(list, sel.FragmentSelectorType, start, end, true)
	}
	from, aerr := pageStart(in.NextToken)
	if aerr != nil {
		return nil, aerr
	}
	out := []fragmentWire{}
	next := ""
	for i := from; i < len(list); i++ {
		if len(out) == in.MaxResults {
			next = strconv.Itoa(i)
			break
		}
		f := list[i]
		out = append(out, fragmentWire{FragmentLengthInMilliseconds: f.DurationMs, FragmentNumber: f.Number, FragmentSizeInBytes: f.Size,
			ProducerTimestamp: toEpoch(f.ProducerMs), ServerTimestamp: toEpoch(f.ServerMs)})
	}
	res := map[string]any{"Fragments": out}
	if next != "" {
		res["NextToken"] = next
	}
	return res, nil
}

// fragmentChunk is a fragment as GetMedia and GetMediaForFragmentList send it: the EBML
// header, a Segment of unknown size, Info, Tracks, Tags with the fragment's number and
// timestamps, the Cluster, then after (GetMedia) more Tags.
func fragmentChunk(p parsedFragment, tags, after []mkv.SimpleTag) []byte {
	out := mkv.Concat(p.EBMLHeader, mkv.AppendHeader(nil, mkv.IDSegment, mkv.UnknownSize), p.Info, p.Tracks, mkv.TagsElement(tags),
		mkv.Element(mkv.IDCluster, mkv.Concat(mkv.UintElement(mkv.IDTimecode, uint64(p.ClusterTimecode)), mkv.Concat(p.BlockRaw...))))
	if len(after) > 0 {
		out = append(out, mkv.TagsElement(after)...)
	}
	return out
}

func epochString(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

type fragmentListInput struct {
	streamRef
	Fragments []string `json:"Fragments"`
}

func (s *streamService) getMediaForFragmentList(w http.ResponseWriter, _ *http.Request, v any) *awsError {
	in := v.(*fragmentListInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return aerr
	}
	if len(in.Fragments) == 0 || len(in.Fragments) > 1000 {
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "Fragments must list 1 to 1000 fragment numbers")
	}
	list, _ := s.media.fragments(st.Name)
	byNumber := map[string]storedFragment{}
	for _, f := range list {
		byNumber[f.Number] = f
	}
	for _, n := range in.Fragments {
		if _, ok := byNumber[n]; !ok {
			return serviceError(http.StatusNotFound, "ResourceNotFoundException", "Fragment %s is not in stream %s (ListFragments lists them)", n, st.Name)
		}
	}
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	for _, n := range in.Fragments {
		f := byNumber[n]
		p, err := s.readFragment(st.Name, f)
		if err != nil {
			_, _ = w.Write(mkv.TagsElement([]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_FRAGMENT_NUMBER", Value: n},
				{Name: "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE", Value: "5000"}, {Name: "AWS_KINESISVIDEO_EXCEPTION_MESSAGE", Value: err.Error()}}))
			continue
		}
		if _, err := w.Write(fragmentChunk(p, []mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_FRAGMENT_NUMBER", Value: n},
			{Name: "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP", Value: epochString(f.ServerMs)},
			{Name: "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP", Value: epochString(f.ProducerMs)}}, nil)); err != nil {
			return nil
		}
	}
	return nil
}

func (s *streamService) readFragment(stream string, f storedFragment) (parsedFragment, error) {
	data, err := s.media.read(stream, f.Number)
	if err != nil {
		return parsedFragment{}, err
	}
	return parseFragment(data)
}

type getMediaInput struct {
	streamRef
	StartSelector *struct {
		StartSelectorType   string        `json:"StartSelectorType"`
		AfterFragmentNumber string        `json:"AfterFragmentNumber"`
		StartTimestamp      *epochSeconds `json:"StartTimestamp"`
		ContinuationToken   string        `json:"ContinuationToken"`
	} `json:"StartSelector"`
}

// getMedia streams the stream's fragments from the selected start, then new ones as they
// are stored, until the client goes away.
func (s *streamService) getMedia(w http.ResponseWriter, r *http.Request, v any) *awsError {
	in := v.(*getMediaInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return aerr
	}
	sel := in.StartSelector
	if sel == nil {
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "StartSelector is required")
	}
	// next picks the first fragment to send from those in ingestion order.
	var next func(list []storedFragment) int
	switch sel.StartSelectorType {
	case "NOW":
		now := s.k.now().UnixMilli()
		next = func(list []storedFragment) int {
			return sort.Search(len(list), func(i int) bool { return list[i].ServerMs >= now })
		}
	case "EARLIEST":
		next = func([]storedFragment) int { return 0 }
	case "FRAGMENT_NUMBER", "CONTINUATION_TOKEN":
		number, after := sel.AfterFragmentNumber, false
		if sel.StartSelectorType == "CONTINUATION_TOKEN" {
			number, after = sel.ContinuationToken, true
		}
		if number == "" {
			return serviceError(http.StatusBadRequest, "InvalidArgumentException", "%s needs its fragment number", sel.StartSelectorType)
		}
		next = func(list []storedFragment) int {
			i := sort.Search(len(list), func(i int) bool { return list[i].Number >= number })
			if after && i < len(list) && list[i].Number == number {
				i++
			}
			return i
		}
	case "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP":
		if sel.StartTimestamp == nil {
			return serviceError(http.StatusBadRequest, "InvalidArgumentException", "%s needs StartTimestamp", sel.StartSelectorType)
		}
		at := sel.StartTimestamp.time().UnixMilli()
		kind := sel.StartSelectorType
		next = func(list []storedFragment) int {
			for i, f := range list {
				if fragmentTime(f, kind)+f.DurationMs > at {
					return i
				}
			}
			return len(list)
		}
	default:
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "StartSelectorType %q is not one of NOW, EARLIEST, FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, CONTINUATION_TOKEN", sel.StartSelectorType)
	}
	w.Header().Set("Content-Type", "video/webm")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	last := ""
	first := true
	for {
		list, changed := s.media.fragments(st.Name)
		sort.Slice(list, func(i, j int) bool { return list[i].Number < list[j].Number })
		i := 0
		if first {
			i = next(list)
			first = false
		} else {
			i = sort.Search(len(list), func(i int) bool { return list[i].Number > last })
		}
		for ; i < len(list); i++ {
			f := list[i]
			p, err := s.readFragment(st.Name, f)
			if err != nil {
				continue // expired meanwhile
			}
			behind := s.k.now().UnixMilli() - f.ServerMs
			chunk := fragmentChunk(p, []mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_FRAGMENT_NUMBER", Value: f.Number},
				{Name: "AWS_KINESISVIDEO_SERVER_TIMESTAMP", Value: epochString(f.ServerMs)},
				{Name: "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", Value: epochString(f.ProducerMs)}},
				[]mkv.SimpleTag{{Name: "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", Value: strconv.FormatInt(behind, 10)},
					{Name: "AWS_KINESISVIDEO_CONTINUATION_TOKEN", Value: f.Number}})
			if _, err := w.Write(chunk); err != nil {
				return nil
			}
			_ = rc.Flush()
			last = f.Number
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-s.ctx.Done():
			return nil
		case <-changed:
		}
		if _, ok := s.streams.named(st.Name); !ok {
			return nil
		}
	}
}

type getClipInput struct {
	streamRef
	ClipFragmentSelector *fragmentSelector `json:"ClipFragmentSelector"`
}

// Clip limits (AWS: 100 MB or 200 fragments).
const (
	maxClipFragments = 200
	maxClipBytes     = 100 << 20
)

func (s *streamService) getClip(w http.ResponseWriter, _ *http.Request, v any) *awsError {
	in := v.(*getClipInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return aerr
	}
	sel := in.ClipFragmentSelector
	if sel == nil || sel.TimestampRange == nil || sel.TimestampRange.StartTimestamp == nil || sel.TimestampRange.EndTimestamp == nil {
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "ClipFragmentSelector needs a FragmentSelectorType and a TimestampRange with StartTimestamp and EndTimestamp")
	}
	if aerr := checkSelectorType(sel.FragmentSelectorType); aerr != nil {
		return aerr
	}
	start, end, aerr := sel.TimestampRange.bounds()
	if aerr != nil {
		return aerr
	}
	if st.DataRetentionInHours == 0 {
		return serviceError(http.StatusBadRequest, "NoDataRetentionException", "Stream %s keeps no data (DataRetentionInHours is 0)", st.Name)
	}
	all, _ := s.media.fragments(st.Name)
	list := inRange(all, sel.FragmentSelectorType, start, end, false)
	if len(list) == 0 {
		return serviceError(http.StatusNotFound, "ResourceNotFoundException", "No fragments found in stream %s for the requested time range", st.Name)
	}
	if len(list) > maxClipFragments {
		list = list[:maxClipFragments]
	}
	clip, aerr := s.buildMP4(st.Name, list, maxClipBytes)
	if aerr != nil {
		return aerr
	}
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Content-Length", strconv.Itoa(len(clip)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(clip)
	return nil
}

// buildMP4 makes a fragmented MP4 of fragments (one moof per fragment), decode times from
// the first fragment's start.
func (s *streamService) buildMP4(stream string, list []storedFragment, maxBytes int) ([]byte, *awsError) {
	var out []byte
	var base int64
	for i, f := range list {
		p, err := s.readFragment(stream, f)
		if err != nil {
			return nil, serviceError(http.StatusInternalServerError, "ClientLimitExceededException", "fragment %s: %v", f.Number, err)
		}
		track, aerr := mp4Track(p)
		if aerr != nil {
			return nil, aerr
		}
		startMs, samples := fragmentSamples(f, p)
		if i == 0 {
			init, err := fmp4.Init(track)
			if err != nil {
				return nil, serviceError(http.StatusBadRequest, "InvalidCodecPrivateDataException", "%v", err)
			}
			out = append(out, init...)
			base = startMs
		}
		frag := fmp4.Fragment(track, uint32(i+1), uint64(max(startMs-base, 0)), samples)
		if len(out)+len(frag) > maxBytes && i > 0 {
			break
		}
		out = append(out, frag...)
	}
	return out, nil
}

// mp4Track is a stored fragment's H.264 track for MP4.
func mp4Track(p parsedFragment) (fmp4.Track, *awsError) {
	if p.Track.CodecID != "V_MPEG4/ISO/AVC" {
		return fmp4.Track{}, serviceError(http.StatusBadRequest, "UnsupportedStreamMediaTypeException", "track 1 is %s; only H.264 (V_MPEG4/ISO/AVC) makes MP4 here", p.Track.CodecID)
	}
	if len(p.Track.CodecPrivate) == 0 {
		return fmp4.Track{}, serviceError(http.StatusBadRequest, "MissingCodecPrivateDataException", "the H.264 track has no codec private data")
	}
	return fmp4.Track{ID: 1, Timescale: 1000, Width: uint32(p.Track.PixelWidth), Height: uint32(p.Track.PixelHeight), AVCC: p.Track.CodecPrivate}, nil
}

// fragmentSamples returns a fragment's first frame time (producer epoch ms) and its
// samples of its video track; the last frame lasts the fragment's mean frame interval.
func fragmentSamples(f storedFragment, p parsedFragment) (int64, []fmp4.Sample) {
	scale := int64(p.TimecodeScale)
	if scale == 0 {
		scale = 1_000_000
	}
	var times []int64
	var samples []fmp4.Sample
	for _, b := range p.Blocks {
		if b.Track != p.Track.Number {
			continue
		}
		times = append(times, f.ProducerMs+int64(b.Timecode)*scale/1_000_000)
		samples = append(samples, fmp4.Sample{Keyframe: b.Keyframe, Data: b.Payload})
	}
	if len(samples) == 0 {
		return f.ProducerMs, nil
	}
	mean := int64(33)
	if n := len(times); n > 1 && times[n-1] > times[0] {
		mean = (times[n-1] - times[0]) / int64(n-1)
	}
	for i := range samples {
		d := mean
		if i+1 < len(times) {
			d = max(times[i+1]-times[i], 1)
		}
		samples[i].Duration = uint32(d)
	}
	return times[0], samples
}
