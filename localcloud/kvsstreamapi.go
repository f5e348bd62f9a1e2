package localcloud

import (
	"errors"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// The KVS stream control plane (WIRE-FORMATS §6): DescribeStream, CreateStream, DeleteStream,
// ListStreams, TagStream, UntagStream, ListTagsForStream, UpdateDataRetention and
// GetDataEndpoint, with AWS's JSON shapes and errors.

// dataEndpointAPIs are GetDataEndpoint's APIName values.
var dataEndpointAPIs = map[string]bool{
	"PUT_MEDIA": true, "GET_MEDIA": true, "LIST_FRAGMENTS": true, "GET_MEDIA_FOR_FRAGMENT_LIST": true,
	"GET_HLS_STREAMING_SESSION_URL": true, "GET_DASH_STREAMING_SESSION_URL": true, "GET_CLIP": true, "GET_IMAGES": true,
}

const maxStreamTags = 50

type streamInfoWire struct {
	CreationTime         float64 `json:"CreationTime"`
	DataRetentionInHours int     `json:"DataRetentionInHours"`
	DeviceName           string  `json:"DeviceName,omitempty"`
	KmsKeyID             string  `json:"KmsKeyId"`
	MediaType            string  `json:"MediaType,omitempty"`
	Status               string  `json:"Status"`
	StreamARN            string  `json:"StreamARN"`
	StreamName           string  `json:"StreamName"`
	Version              string  `json:"Version"`
}

func streamInfo(s kvsStream) streamInfoWire {
	return streamInfoWire{
		CreationTime: float64(s.CreationTime.UnixMilli()) / 1000, DataRetentionInHours: s.DataRetentionInHours,
		DeviceName: s.DeviceName, KmsKeyID: s.KmsKeyID, MediaType: s.MediaType, Status: s.status(),
		StreamARN: s.ARN, StreamName: s.Name, Version: s.Version,
	}
}

// streamRef names a stream by name or ARN, as most stream operations take it.
type streamRef struct {
	StreamName string `json:"StreamName"`
	StreamARN  string `json:"StreamARN"`
}

func errStreamNotFound() *awsError {
	return serviceError(http.StatusNotFound, "ResourceNotFoundException", "The requested stream is not found or not active.")
}

// findStream looks a stream up by name or ARN (one of them; both must agree).
func (s *streamService) findStream(ref streamRef) (kvsStream, *awsError) {
	if ref.StreamName == "" && ref.StreamARN == "" {
		return kvsStream{}, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Either StreamName or StreamARN must be given")
	}
	var (
		st kvsStream
		ok bool
	)
	if ref.StreamARN != "" {
		st, ok = s.streams.withARN(ref.StreamARN)
		if ok && ref.StreamName != "" && ref.StreamName != st.Name {
			return kvsStream{}, serviceError(http.StatusBadRequest, "InvalidArgumentException", "StreamName %s and StreamARN %s name different streams; give one of them", ref.StreamName, ref.StreamARN)
		}
	} else {
		st, ok = s.streams.named(ref.StreamName)
	}
	if !ok {
		return kvsStream{}, errStreamNotFound()
	}
	return st, nil
}

func (s *streamService) describeStream(_ *http.Request, v any) (any, *awsError) {
	st, aerr := s.findStream(*v.(*streamRef))
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{"StreamInfo": streamInfo(st)}, nil
}

type createStreamInput struct {
	DeviceName           string            `json:"DeviceName"`
	StreamName           string            `json:"StreamName"`
	MediaType            string            `json:"MediaType"`
	KmsKeyID             string            `json:"KmsKeyId"`
	DataRetentionInHours *int              `json:"DataRetentionInHours"`
	Tags                 map[string]string `json:"Tags"`
}

func validateRetention(h int) *awsError {
	if h < 0 || h > 87600 {
		return serviceError(http.StatusBadRequest, "InvalidArgumentException", "1 validation error detected: Value '%d' at 'dataRetentionInHours' failed to satisfy constraint: Member must have value between 0 and 87600", h)
	}
	return nil
}

func (s *streamService) createStream(_ *http.Request, v any) (any, *awsError) {
	in := v.(*createStreamInput)
	if !streamNamePattern.MatchString(in.StreamName) {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "1 validation error detected: Value '%s' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+", in.StreamName)
	}
	if len(in.DeviceName) > 128 {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "DeviceName must be at most 128 characters")
	}
	retention := 0
	if in.DataRetentionInHours != nil {
		retention = *in.DataRetentionInHours
	}
	if aerr := validateRetention(retention); aerr != nil {
		return nil, aerr
	}
	if len(in.Tags) > maxStreamTags {
		return nil, serviceError(http.StatusBadRequest, "TagsPerResourceExceededLimitException", "A stream may have at most %d tags", maxStreamTags)
	}
	st, err := s.streams.create(kvsStream{Name: in.StreamName, DeviceName: in.DeviceName, MediaType: in.MediaType, KmsKeyID: in.KmsKeyID,
		DataRetentionInHours: retention, Tags: in.Tags}, s.k.now(), false)
	if errors.Is(err, errStreamExists) {
		return nil, serviceError(http.StatusBadRequest, "ResourceInUseException", "The stream %s already exists", in.StreamName)
	}
	if err != nil {
		return nil, serviceError(http.StatusInternalServerError, "ClientLimitExceededException", "%v", err)
	}
	s.media.revive(st.Name)
	s.log.Info("stream created", zap.String("stream", st.Name), zap.String("arn", st.ARN), zap.Int("retention_hours", retention))
	return map[string]string{"StreamARN": st.ARN}, nil
}

type deleteStreamInput struct {
	StreamARN      string `json:"StreamARN"`
	CurrentVersion string `json:"CurrentVersion"`
}

func (s *streamService) deleteStream(_ *http.Request, v any) (any, *awsError) {
	in := v.(*deleteStreamInput)
	if in.StreamARN == "" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "StreamARN is required")
	}
	st, aerr := s.findStream(streamRef{StreamARN: in.StreamARN})
	if aerr != nil {
		return nil, aerr
	}
	if _, err := s.streams.remove(st.Name, in.CurrentVersion); err != nil {
		return nil, storeError(err, st.Name)
	}
	s.streamDeleted(st.Name)
	s.log.Info("stream deleted", zap.String("stream", st.Name))
	return map[string]any{}, nil
}

// storeError maps a store failure to AWS's error.
func storeError(err error, name string) *awsError {
	switch {
	case errors.Is(err, errStreamMissing):
		return errStreamNotFound()
	case errors.Is(err, errVersionChanged):
		return serviceError(http.StatusBadRequest, "VersionMismatchException", "The stream version you specified is not the latest version of stream %s.", name)
	}
	var aerr *awsError
	if errors.As(err, &aerr) {
		return aerr
	}
	return serviceError(http.StatusInternalServerError, "ClientLimitExceededException", "%v", err)
}

type listStreamsInput struct {
	MaxResults          int    `json:"MaxResults"`
	NextToken           string `json:"NextToken"`
	StreamNameCondition *struct {
		ComparisonOperator string `json:"ComparisonOperator"`
		ComparisonValue    string `json:"ComparisonValue"`
	} `json:"StreamNameCondition"`
}

func (s *streamService) listStreams(_ *http.Request, v any) (any, *awsError) {
	in := v.(*listStreamsInput)
	if in.MaxResults == 0 {
		in.MaxResults = 10000
	}
	if in.MaxResults < 1 || in.MaxResults > 10000 {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "MaxResults must be between 1 and 10000")
	}
	prefix := ""
	if c := in.StreamNameCondition; c != nil {
		if c.ComparisonOperator != "" && c.ComparisonOperator != "BEGINS_WITH" {
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "ComparisonOperator must be BEGINS_WITH")
		}
		prefix = c.ComparisonValue
	}
	start, aerr := pageStart(in.NextToken)
	if aerr != nil {
		return nil, aerr
	}
	list := []streamInfoWire{}
	all := s.streams.list()
	next := ""
	for i := start; i < len(all); i++ {
		if !strings.HasPrefix(all[i].Name, prefix) {
			continue
		}
		if len(list) == in.MaxResults {
			next = strconv.Itoa(i)
			break
		}
		list = append(list, streamInfo(all[i]))
	}
	out := map[string]any{"StreamInfoList": list}
	if next != "" {
		out["NextToken"] = next
	}
	return out, nil
}

// pageStart decodes this stand-in's NextToken (an index).
func pageStart(token string) (int, *awsError) {
	if token == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(token)
	if err != nil || n < 0 {
		return 0, serviceError(http.StatusBadRequest, "InvalidArgumentException", "NextToken %q was not returned by this service", token)
	}
	return n, nil
}

type tagStreamInput struct {
	streamRef
	Tags map[string]string `json:"Tags"`
}

func (s *streamService) tagStream(_ *http.Request, v any) (any, *awsError) {
	in := v.(*tagStreamInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	for k, val := range in.Tags {
		if k == "" || len(k) > 128 || len(val) > 256 {
			return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "Tag keys are 1 to 128 characters and values at most 256 (key %q)", k)
		}
	}
	_, err := s.streams.update(st.Name, "", false, func(x *kvsStream) error {
		if x.Tags == nil {
			x.Tags = map[string]string{}
		}
		for k, val := range in.Tags {
			x.Tags[k] = val
		}
		if len(x.Tags) > maxStreamTags {
			return serviceError(http.StatusBadRequest, "TagsPerResourceExceededLimitException", "A stream may have at most %d tags", maxStreamTags)
		}
		return nil
	})
	if err != nil {
		return nil, storeError(err, st.Name)
	}
	return map[string]any{}, nil
}

type untagStreamInput struct {
	streamRef
	TagKeyList []string `json:"TagKeyList"`
}

func (s *streamService) untagStream(_ *http.Request, v any) (any, *awsError) {
	in := v.(*untagStreamInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	_, err := s.streams.update(st.Name, "", false, func(x *kvsStream) error {
		for _, k := range in.TagKeyList {
			delete(x.Tags, k)
		}
		return nil
	})
	if err != nil {
		return nil, storeError(err, st.Name)
	}
	return map[string]any{}, nil
}

type listTagsInput struct {
	streamRef
	NextToken string `json:"NextToken"`
}

func (s *streamService) listTagsForStream(_ *http.Request, v any) (any, *awsError) {
	in := v.(*listTagsInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	tags := st.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return map[string]any{"Tags": tags}, nil
}

type updateRetentionInput struct {
	streamRef
	CurrentVersion             string `json:"CurrentVersion"`
	Operation                  string `json:"Operation"`
	DataRetentionChangeInHours int    `json:"DataRetentionChangeInHours"`
}

func (s *streamService) updateDataRetention(_ *http.Request, v any) (any, *awsError) {
	in := v.(*updateRetentionInput)
	st, aerr := s.findStream(in.streamRef)
	if aerr != nil {
		return nil, aerr
	}
	if in.CurrentVersion == "" {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "CurrentVersion is required (DescribeStream returns it)")
	}
	if in.DataRetentionChangeInHours < 1 {
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "DataRetentionChangeInHours must be at least 1")
	}
	_, err := s.streams.update(st.Name, in.CurrentVersion, true, func(x *kvsStream) error {
		h := x.DataRetentionInHours
		switch in.Operation {
		case "INCREASE_DATA_RETENTION":
			h += in.DataRetentionChangeInHours
		case "DECREASE_DATA_RETENTION":
			h -= in.DataRetentionChangeInHours
		default:
			return serviceError(http.StatusBadRequest, "InvalidArgumentException", "Operation must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION, not %q", in.Operation)
		}
		if aerr := validateRetention(h); aerr != nil {
			return aerr
		}
		x.DataRetentionInHours = h
		return nil
	})
	if err != nil {
		return nil, storeError(err, st.Name)
	}
	s.media.sweepSoon()
	return map[string]any{}, nil
}

type dataEndpointInput struct {
	streamRef
	APIName string `json:"APIName"`
}

// getDataEndpoint answers with this listener, in the scheme the client used (kvssink
// appends /putMedia and uses the scheme as given).
func (s *streamService) getDataEndpoint(r *http.Request, v any) (any, *awsError) {
	in := v.(*dataEndpointInput)
	if !dataEndpointAPIs[in.APIName] {
		names := make([]string, 0, len(dataEndpointAPIs))
		for n := range dataEndpointAPIs {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, serviceError(http.StatusBadRequest, "InvalidArgumentException", "APIName %q is not one of %s", in.APIName, strings.Join(names, ", "))
	}
	if _, aerr := s.findStream(in.streamRef); aerr != nil {
		return nil, aerr
	}
	return map[string]string{"DataEndpoint": s.endpointFor(r)}, nil
}

// endpointFor is this listener's URL as the client reached it: its scheme and Host. AWS's
// producer sends the Host without the port (it talks to AWS on 443): the listener's port is
// added then, or kvssink would PUT to port 80.
func (s *streamService) endpointFor(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		if _, port, err := net.SplitHostPort(s.k.addr); err == nil {
			host = net.JoinHostPort(strings.Trim(host, "[]"), port)
		}
	}
	return scheme + "://" + host
}

// controlRoutes adds the stream control plane to mux.
func (s *streamService) controlRoutes(mux *http.ServeMux) {
	k := s.k
	mux.Handle("/describeStream", k.controlPlane("DescribeStream", func() any { return &streamRef{} }, s.describeStream))
	mux.Handle("/createStream", k.controlPlane("CreateStream", func() any { return &createStreamInput{} }, s.createStream))
	mux.Handle("/deleteStream", k.controlPlane("DeleteStream", func() any { return &deleteStreamInput{} }, s.deleteStream))
	mux.Handle("/listStreams", k.controlPlane("ListStreams", func() any { return &listStreamsInput{} }, s.listStreams))
	mux.Handle("/tagStream", k.controlPlane("TagStream", func() any { return &tagStreamInput{} }, s.tagStream))
	mux.Handle("/untagStream", k.controlPlane("UntagStream", func() any { return &untagStreamInput{} }, s.untagStream))
	mux.Handle("/listTagsForStream", k.controlPlane("ListTagsForStream", func() any { return &listTagsInput{} }, s.listTagsForStream))
	mux.Handle("/updateDataRetention", k.controlPlane("UpdateDataRetention", func() any { return &updateRetentionInput{} }, s.updateDataRetention))
	mux.Handle("/getDataEndpoint", k.controlPlane("GetDataEndpoint", func() any { return &dataEndpointInput{} }, s.getDataEndpoint))
}
