package localcloud

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgecam/edgecam/localcloud/fmp4"
)

// HLS as KVS serves it: GetHLSStreamingSessionURL returns the URL of a master playlist
// (…/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=…); the session's media playlist lists
// one fMP4 segment per fragment (getMP4MediaFragment.mp4) after an init segment
// (getMP4InitFragment.mp4). LIVE lists the newest fragments, LIVE_REPLAY grows from a start,
// ON_DEMAND is a fixed range ending with #EXT-X-ENDLIST.

type hlsSessionInput struct {
	streamRef
	PlaybackMode        string `json:"PlaybackMode"`
	HLSFragmentSelector *struct {
		FragmentSelectorType string          `json:"FragmentSelectorType"`
		TimestampRange       *timestampRange `json:"TimestampRange"`
	} `json:"HLSFragmentSelector"`
	ContainerFormat                 string `json:"ContainerFormat"`
	DiscontinuityMode               string `json:"DiscontinuityMode"`
	DisplayFragmentTimestamp        string `json:"DisplayFragmentTimestamp"`
	Expires                         *int   `json:"Expires"`
	MaxMediaPlaylistFragmentResults *int   `json:"MaxMediaPlaylistFragmentResults"`
}

type hlsSession struct {
	stream        string
	mode          string
	selector      string
	start, end    *time.Time
	expires       time.Time
	maxFragments  int
	discontinuity string
	showTime      bool
	baseMs        int64 // decode time 0 of every segment of the session
}

// hlsSessions keeps the sessions handed out.
type hlsSessions struct {
	mu sync.Mutex
	m  map[string]*hlsSession
}

func (h *hlsSessions) add(sess *hlsSession) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*hlsSession{}
	}
	for t, s := range h.m {
		if time.Now().After(s.expires) {
			delete(h.m, t)
		}
	}
	h.m[token] = sess
	return token
}

func (h *hlsSessions) get(token string) (*hlsSession, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.m[token]
	if ok && time.Now().After(s.expires) {
		delete(h.m, token)
		return nil, false
	}
	return s, ok
}

func (s *streamService) getHLSStreamingSessionURL(r *http.Request, v any) (any, *awsError) {
	in := v.(*hlsSessionInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	sess := &hlsSession{stream: st.Name, mode: in.PlaybackMode, selector: "SERVER_TIMESTAMP", discontinuity: in.DiscontinuityMode}
	if sess.mode == "" {
		sess.mode = "LIVE"
	}
	if sess.mode != "LIVE" && sess.mode != "LIVE_REPLAY" && sess.mode != "ON_DEMAND" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "PlaybackMode must be LIVE, LIVE_REPLAY or ON_DEMAND, not %q", in.PlaybackMode)
	}
	if in.ContainerFormat != "" && in.ContainerFormat != "FRAGMENTED_MP4" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ContainerFormat %s is not served here; use FRAGMENTED_MP4", in.ContainerFormat)
	}
	switch in.DisplayFragmentTimestamp {
	case "", "NEVER":
	case "ALWAYS":
		sess.showTime = true
	default:
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "DisplayFragmentTimestamp must be ALWAYS or NEVER")
	}
	if sess.discontinuity == "" {
		sess.discontinuity = "ALWAYS"
	}
	if sess.discontinuity != "ALWAYS" && sess.discontinuity != "NEVER" && sess.discontinuity != "ON_DISCONTINUITY" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "DiscontinuityMode must be ALWAYS, NEVER or ON_DISCONTINUITY")
	}
	expires := 300
	if in.Expires != nil {
		expires = *in.Expires
	}
	if expires < 300 || expires > 43200 {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Expires must be between 300 and 43200 seconds")
	}
	sess.expires = time.Now().Add(time.Duration(expires) * time.Second)
	sess.maxFragments = 5
	if sess.mode == "ON_DEMAND" {
		sess.maxFragments = 1000
	}
	if in.MaxMediaPlaylistFragmentResults != nil {
		sess.maxFragments = *in.MaxMediaPlaylistFragmentResults
		if sess.maxFragments < 1 || sess.maxFragments > 5000 {
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "MaxMediaPlaylistFragmentResults must be between 1 and 5000")
		}
	}
	if sel := in.HLSFragmentSelector; sel != nil {
		if sel.FragmentSelectorType != "" {
			if aerr := checkSelectorType(sel.FragmentSelectorType); aerr != nil {
				return nil, aerr
			}
			sess.selector = sel.FragmentSelectorType
		}
		if sess.start, sess.end, aerr = sel.TimestampRange.bounds(); aerr != nil {
			return nil, aerr
		}
	}
	switch {
	case sess.mode == "LIVE" && (sess.start != nil || sess.end != nil):
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "TimestampRange is not allowed in LIVE mode")
	case sess.mode == "ON_DEMAND" && (sess.start == nil || sess.end == nil):
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ON_DEMAND needs a TimestampRange with StartTimestamp and EndTimestamp")
	case sess.mode == "LIVE_REPLAY" && sess.start == nil:
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "LIVE_REPLAY needs a StartTimestamp")
	case sess.end != nil && sess.start != nil && sess.end.Sub(*sess.start) > 24*time.Hour:
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "the TimestampRange must not span more than 24 hours")
	}
	if st.DataRetentionInHours == 0 {
		return nil, serviceError(http.StatusBadRequest, "NoDataRetentionException", "Stream %s keeps no data (DataRetentionInHours is 0)", st.Name)
	}
	list := s.hlsFragments(sess)
	if len(list) == 0 {
		return nil, serviceError(http.StatusNotFound, "ResourceNotFoundException", "No fragments found in stream %s for the requested playback", st.Name)
	}
	sess.baseMs = list[0].ProducerMs
	if sess.start != nil && sess.selector == "PRODUCER_TIMESTAMP" {
		sess.baseMs = min(sess.baseMs, sess.start.UnixMilli())
	}
	token := s.hls.add(sess)
	return map[string]string{"HLSStreamingSessionURL": s.endpointFor(r) + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=" + url.QueryEscape(token)}, nil
}

// hlsFragments are the fragments a session's media playlist lists now.
func (s *streamService) hlsFragments(sess *hlsSession) []storedFragment {
	all, _ := s.media.fragments(sess.stream)
	list := inRange(all, sess.selector, sess.start, sess.end, false)
	if sess.mode == "LIVE" && len(list) > sess.maxFragments {
		return list[len(list)-sess.maxFragments:]
	}
	if len(list) > sess.maxFragments {
		list = list[:sess.maxFragments]
	}
	return list
}

// serveHLS serves the session's playlists and segments.
func (s *streamService) serveHLS(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("SessionToken")
	sess, ok := s.hls.get(token)
	if !ok {
		serviceError(http.StatusForbidden, "ExpiredPlaylistException", "The session token is unknown or expired: call GetHLSStreamingSessionURL again").write(w)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	q := "SessionToken=" + url.QueryEscape(token)
	switch strings.TrimPrefix(r.URL.Path, "/hls/v1/") {
	case "getHLSMasterPlaylist.m3u8":
		list := s.hlsFragments(sess)
		codecs, res := "avc1.42e01e", ""
		if len(list) > 0 {
			if p, err := s.readFragment(sess.stream, list[0]); err == nil {
				if cp := p.Track.CodecPrivate; len(cp) >= 4 {
					codecs = fmt.Sprintf("avc1.%02x%02x%02x", cp[1], cp[2], cp[3])
				}
				if p.Track.PixelWidth > 0 {
					res = fmt.Sprintf(",RESOLUTION=%dx%d", p.Track.PixelWidth, p.Track.PixelHeight)
				}
			}
		}
		bandwidth := int64(2_000_000)
		var bytes, ms int64
		for _, f := range list {
			bytes, ms = bytes+f.Size, ms+f.DurationMs
		}
		if ms > 0 {
			bandwidth = bytes * 8 * 1000 / ms
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		fmt.Fprintf(w, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"%s\"%s\ngetHLSMediaPlaylist.m3u8?%s&TrackNumber=1\n", bandwidth, codecs, res, q)
	case "getHLSMediaPlaylist.m3u8":
		s.mediaPlaylist(w, sess, q)
	case "getMP4InitFragment.mp4":
		list := s.hlsFragments(sess)
		if len(list) == 0 {
			serviceError(http.StatusNotFound, "ResourceNotFoundException", "No fragments in this session yet").write(w)
			return
		}
		p, err := s.readFragment(sess.stream, list[0])
		if err != nil {
			serviceError(http.StatusNotFound, "ResourceNotFoundException", "%v", err).write(w)
			return
		}
		track, aerr := mp4Track(p)
		if aerr != nil {
			aerr.write(w)
			return
		}
		init, err := fmp4.Init(track)
		if err != nil {
			serviceError(http.StatusBadRequest, "InvalidCodecPrivateDataException", "%v", err).write(w)
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		_, _ = w.Write(init)
	case "getMP4MediaFragment.mp4":
		number := r.URL.Query().Get("FragmentNumber")
		all, _ := s.media.fragments(sess.stream)
		for i, f := range all {
			if f.Number != number {
				continue
			}
			p, err := s.readFragment(sess.stream, f)
			if err != nil {
				break
			}
			track, aerr := mp4Track(p)
			if aerr != nil {
				aerr.write(w)
				return
			}
			startMs, samples := fragmentSamples(f, p)
			w.Header().Set("Content-Type", "video/mp4")
			_, _ = w.Write(fmp4.Fragment(track, uint32(i+1), uint64(max(startMs-sess.baseMs, 0)), samples))
			return
		}
		serviceError(http.StatusNotFound, "ResourceNotFoundException", "Fragment %s is not in stream %s", number, sess.stream).write(w)
	default:
		serviceError(http.StatusNotFound, "ResourceNotFoundException", "%s is not part of an HLS session", r.URL.Path).write(w)
	}
}

func (s *streamService) mediaPlaylist(w http.ResponseWriter, sess *hlsSession, q string) {
	list := s.hlsFragments(sess)
	all, _ := s.media.fragments(sess.stream)
	seq := 0
	if len(list) > 0 {
		for i, f := range all {
			if f.Number == list[0].Number {
				seq = i
				break
			}
		}
	}
	target := int64(1)
	for _, f := range list {
		target = max(target, int64(math.Ceil(float64(f.DurationMs)/1000)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", target, seq)
	if sess.mode == "ON_DEMAND" {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:VOD\n")
	} else if sess.mode == "LIVE_REPLAY" {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:EVENT\n")
	}
	fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?%s&TrackNumber=1\"\n", q)
	var prevEnd int64
	for i, f := range list {
		at := fragmentTime(f, "PRODUCER_TIMESTAMP")
		if i > 0 && (sess.discontinuity == "ALWAYS" || sess.discontinuity == "ON_DISCONTINUITY" && at-prevEnd > 1000) {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		prevEnd = at + f.DurationMs
		if sess.showTime {
			fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", time.UnixMilli(at).UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		fmt.Fprintf(&b, "#EXTINF:%s,\ngetMP4MediaFragment.mp4?%s&FragmentNumber=%s&TrackNumber=1\n", strconv.FormatFloat(float64(f.DurationMs)/1000, 'f', 3, 64), q, f.Number)
	}
	if sess.mode == "ON_DEMAND" || sess.end != nil && s.k.now().After(*sess.end) && len(list) > 0 {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	_, _ = w.Write([]byte(b.String()))
}
