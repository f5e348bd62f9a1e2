package kvsupload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	kvtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/edgecam/edgecam/internal/backoff"
	"go.uber.org/zap"
)

// KVS limits per stream (PutMedia).
const (
	kvsMaxFragmentsPerSecond = 5
	kvsMaxBytesPerSecond     = 12_500_000
	emptyPayloadSHA256       = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// ErrFatal marks an error that retrying cannot cure (the stream was deleted, access is denied,
// the stream does not exist and may not be created): Run returns it.
var ErrFatal = errors.New("kvsupload: upload stopped")

// UploaderOptions configure an Uploader.
type UploaderOptions struct {
	Spool      *Spool
	StreamName string
	Region     string
	// Credentials sign every request; a provider with an Invalidate method (aws.CredentialsCache,
	// provisioning.CredentialsCache) is told when KVS refuses them.
	Credentials aws.CredentialsProvider
	// ControlPlaneURL is the KVS control plane (DescribeStream, CreateStream, GetDataEndpoint);
	// empty is AWS's endpoint for Region.
	ControlPlaneURL string
	// CreateStream lets the uploader create a missing stream with DataRetentionHours.
	CreateStream       bool
	DataRetentionHours int
	// DeviceName is recorded when the stream is created (default "edgecam").
	DeviceName string
	// MaxUploadKbps bounds the upload rate (backlog and live alike); zero: KVS's own limit of
	// 12.5 MB/s. KVS's 5 fragments/s always applies.
	MaxUploadKbps int
	// AckTimeout: no acknowledgement for this long while fragments are outstanding closes the
	// connection; everything not yet PERSISTED is sent again. Zero: 20 s.
	AckTimeout time.Duration
	// MaxConnection bounds one PutMedia connection; it is also renewed RenewBefore ahead of
	// the credentials' expiry. Zero: 40 min (KVS ends connections after about an hour).
	MaxConnection time.Duration
	RenewBefore   time.Duration // zero: 2 min
	// MaxInFlight bounds the fragments sent but not yet PERSISTED. Zero: 20.
	MaxInFlight int
	// Deduplicate asks ListFragments, before fragments that may already have reached KVS are
	// sent again (after a lost connection or a restart), which of them KVS stored, and skips
	// those: a lost PERSISTED acknowledgement then costs no duplicate. Needs
	// kinesisvideo:ListFragments; without it (or on any error) fragments are simply sent again.
	Deduplicate bool
	// MaxBackoff caps the wait between failed connections. Zero: 30 s.
	MaxBackoff time.Duration
	// FinishTimeout bounds the wait for the last acknowledgements when Run stops. Zero: 10 s.
	FinishTimeout time.Duration
	HTTPClient    *http.Client
	Log           *zap.Logger
	// Now returns the wall clock; nil means time.Now.
	Now func() time.Time
}

// UploaderStats is a snapshot of the uploader.
type UploaderStats struct {
	Connections    uint64
	ConnectErrors  uint64
	SentFragments  uint64 // fragments written to PutMedia (resends included)
	SentBytes      int64
	Resent         uint64 // fragments sent again after a lost connection or a retryable error
	AlreadyStored  uint64 // fragments found in KVS by ListFragments and not sent again
	Persisted      uint64
	PersistedBytes int64  // cluster bytes of the PERSISTED fragments
	Skipped        uint64 // fragments KVS refused for good (logged)
	Acks           map[string]uint64
	Errors         map[int]uint64 // ERROR acknowledgements by ErrorId
	Connected      bool
	LastPersisted  time.Time // capture time of the newest PERSISTED fragment
	UploadLag      time.Duration
	LastError      string
	StreamEndpoint string
}

// Uploader streams the spool to KVS PutMedia: one long chunked request per connection,
// fragments in spool order, acknowledgements read as they arrive; a fragment leaves the
// spool on PERSISTED only.
type Uploader struct {
	opts   UploaderOptions
	log    *zap.Logger
	kv     *kinesisvideo.Client
	signer *v4.Signer
	http   *http.Client

	mu      sync.Mutex
	stats   UploaderStats
	ready   bool // the stream is known to exist
	retries map[uint64]int
	pace    pacer
	checked bool // the spool's start was checked against ListFragments once
	noList  bool // ListFragments failed: do not try again
}

// NewUploader checks the options.
func NewUploader(opts UploaderOptions) (*Uploader, error) {
	switch {
	case opts.Spool == nil:
		return nil, errors.New("kvsupload: no spool")
	case opts.StreamName == "":
		return nil, errors.New("kvsupload: no stream name (set recording.kvs.stream_name, or provision the device)")
	case opts.Region == "":
		return nil, errors.New("kvsupload: no AWS region")
	case opts.Credentials == nil:
		return nil, errors.New("kvsupload: no AWS credentials provider (set credentials.endpoint)")
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 20 * time.Second
	}
	if opts.MaxConnection <= 0 {
		opts.MaxConnection = 40 * time.Minute
	}
	if opts.RenewBefore <= 0 {
		opts.RenewBefore = 2 * time.Minute
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 20
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.FinishTimeout <= 0 {
		opts.FinishTimeout = 10 * time.Second
	}
	if opts.DeviceName == "" {
		opts.DeviceName = "edgecam"
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	u := &Uploader{opts: opts, log: opts.Log.With(zap.String("stream", opts.StreamName)), signer: v4.NewSigner(),
		http: opts.HTTPClient, retries: map[uint64]int{}}
	u.stats.Acks = map[string]uint64{}
	u.stats.Errors = map[int]uint64{}
	rate := kvsMaxBytesPerSecond
	if opts.MaxUploadKbps > 0 {
		rate = min(rate, opts.MaxUploadKbps*1000/8)
	}
	u.pace = pacer{bytesPerSec: float64(rate), minGap: time.Second / kvsMaxFragmentsPerSecond}
	control := &http.Client{Timeout: 30 * time.Second, Transport: opts.HTTPClient.Transport}
	u.kv = kinesisvideo.New(kinesisvideo.Options{Region: opts.Region, Credentials: opts.Credentials, HTTPClient: control},
		func(o *kinesisvideo.Options) {
			if opts.ControlPlaneURL != "" {
				o.BaseEndpoint = aws.String(opts.ControlPlaneURL)
			}
		})
	return u, nil
}

// Stats returns a snapshot of the uploader's counters.
func (u *Uploader) Stats() UploaderStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.stats
	st.Acks = make(map[string]uint64, len(u.stats.Acks))
	for k, v := range u.stats.Acks {
		st.Acks[k] = v
	}
	st.Errors = make(map[int]uint64, len(u.stats.Errors))
	for k, v := range u.stats.Errors {
		st.Errors[k] = v
	}
	if oldest := u.opts.Spool.Stats().Oldest; !oldest.IsZero() {
		st.UploadLag = u.opts.Now().Sub(oldest)
	}
	return st
}

// Run uploads until ctx ends, reconnecting with jittered back-off. It returns nil when ctx
// ends, or an error wrapping ErrFatal when retrying cannot help.
func (u *Uploader) Run(ctx context.Context) error {
	failures := 0
	for {
		persisted := u.Stats().Persisted
		err := u.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrFatal) {
			u.setError(err)
			u.log.Error("KVS upload stopped", zap.Error(err))
			return err
		}
		if err == nil {
			failures = 0
			continue
		}
		u.setError(err)
		if u.Stats().Persisted > persisted {
			failures = 0 // the connection did work for a while
		}
		failures++
		wait := backoff.Delay(time.Second, u.opts.MaxBackoff, failures)
		u.log.Warn("KVS upload interrupted; connecting again", zap.Error(err), zap.Duration("in", wait),
			zap.Int("waiting_fragments", u.opts.Spool.Stats().Fragments))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (u *Uploader) setError(err error) {
	u.mu.Lock()
	u.stats.LastError = err.Error()
	u.mu.Unlock()
}

// dataEndpoint makes sure the stream exists (DescribeStream, CreateStream when allowed) and
// returns its PutMedia endpoint.
func (u *Uploader) dataEndpoint(ctx context.Context) (string, error) {
	u.mu.Lock()
	ready := u.ready
	u.mu.Unlock()
	if !ready {
		_, err := u.kv.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(u.opts.StreamName)})
		var nf *kvtypes.ResourceNotFoundException
		switch {
		case errors.As(err, &nf) && u.opts.CreateStream:
			_, err = u.kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(u.opts.StreamName),
				DeviceName: aws.String(u.opts.DeviceName), MediaType: aws.String("video/h264"),
				DataRetentionInHours: aws.Int32(int32(u.opts.DataRetentionHours))})
			var inUse *kvtypes.ResourceInUseException
			if err != nil && !errors.As(err, &inUse) {
				return "", u.controlError("CreateStream", err)
			}
			u.log.Info("KVS stream created", zap.Int("retention_hours", u.opts.DataRetentionHours))
		case errors.As(err, &nf):
			return "", fmt.Errorf("%w: KVS stream %q does not exist: create it, or allow the agent to create it", ErrFatal, u.opts.StreamName)
		case err != nil:
			return "", u.controlError("DescribeStream", err)
		}
		u.mu.Lock()
		u.ready = true
		u.mu.Unlock()
	}
	out, err := u.kv.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(u.opts.StreamName), APIName: kvtypes.APINamePutMedia})
	if err != nil {
		var nf *kvtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			u.mu.Lock()
			u.ready = false
			u.mu.Unlock()
		}
		return "", u.controlError("GetDataEndpoint", err)
	}
	return strings.TrimSuffix(aws.ToString(out.DataEndpoint), "/"), nil
}

// controlError classifies a control-plane error: access denied is fatal, refused credentials
// are invalidated, the rest is retried.
func (u *Uploader) controlError(op string, err error) error {
	var denied *kvtypes.AccessDeniedException
	if errors.As(err, &denied) {
		return fmt.Errorf("%w: %s: access denied — the role behind credentials.role_alias needs kinesisvideo:%s, DescribeStream, GetDataEndpoint and PutMedia on stream %q: %v",
			ErrFatal, op, op, u.opts.StreamName, err)
	}
	if s := err.Error(); strings.Contains(s, "UnrecognizedClient") || strings.Contains(s, "ExpiredToken") || strings.Contains(s, "InvalidSignature") {
		u.invalidateCredentials()
	}
	return fmt.Errorf("KVS %s: %w", op, err)
}

func (u *Uploader) invalidateCredentials() {
	if inv, ok := u.opts.Credentials.(interface{ Invalidate() }); ok {
		inv.Invalidate()
	}
}

// sent is a fragment written on the current connection and not yet PERSISTED.
type sent struct {
	seq      uint64
	timecode int64
	wall     time.Time
	at       time.Time
	size     int // cluster bytes
}

// conn is the state one PutMedia connection shares between its writer and its ack reader.
type conn struct {
	mu       sync.Mutex
	inflight []sent
	lastAck  time.Time
	acked    chan struct{} // signalled on every acknowledgement
	endErr   error         // why the connection ends
	stopCh   chan struct{} // closed: send nothing more, end the body cleanly
	stopOnce sync.Once
}

// stop asks the writer to end the body cleanly (once).
func (c *conn) stop() { c.stopOnce.Do(func() { close(c.stopCh) }) }

// end records why the connection ends (the first reason wins) and stops the writer.
func (c *conn) end(err error) {
	c.mu.Lock()
	if c.endErr == nil {
		c.endErr = err
	}
	c.mu.Unlock()
	c.stop()
}

func (c *conn) signal() {
	select {
	case c.acked <- struct{}{}:
	default:
	}
}

func (c *conn) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// session runs one PutMedia connection. It returns nil when the connection ended on purpose
// (renewal before the credentials expire, a new track, a skipped fragment) and should be
// replaced at once.
func (u *Uploader) session(ctx context.Context) error {
	endpoint, err := u.dataEndpoint(ctx)
	if err != nil {
		u.count(func(s *UploaderStats) { s.ConnectErrors++ })
		return err
	}
	creds, err := u.opts.Credentials.Retrieve(ctx)
	if err != nil {
		u.count(func(s *UploaderStats) { s.ConnectErrors++ })
		return fmt.Errorf("KVS PutMedia: AWS credentials: %w", err)
	}
	now := u.opts.Now()
	renewAt := now.Add(u.opts.MaxConnection)
	if creds.CanExpire && creds.Expires.Add(-u.opts.RenewBefore).Before(renewAt) {
		renewAt = latest(creds.Expires.Add(-u.opts.RenewBefore), now.Add(30*time.Second))
	}

	u.skipStored(ctx, creds)
	// The first fragment decides the track header of this connection.
	first, err := u.waitFragment(ctx, 0, nil, 0)
	if err != nil {
		return nil // ctx ended
	}

	sctx, abort := context.WithCancelCause(context.WithoutCancel(ctx)) // ends after the last acknowledgements, not with ctx
	defer abort(nil)
	// Until KVS answers, stopping need not wait for anything.
	var answered atomic.Bool
	stopConnecting := context.AfterFunc(ctx, func() {
		if !answered.Load() {
			abort(ctx.Err())
		}
	})
	defer stopConnecting()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, endpoint+"/putMedia", pr)
	if err != nil {
		return fmt.Errorf("%w: KVS data endpoint %q: %v", ErrFatal, endpoint, err)
	}
	req.ContentLength = -1
	req.Header.Set("x-amzn-stream-name", u.opts.StreamName)
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%d.%03d", now.Unix(), now.Nanosecond()/1e6))
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	req.Header.Set("User-Agent", "edgecam-kvsupload")
	if err := u.signer.SignHTTP(ctx, creds, req, emptyPayloadSHA256, "kinesisvideo", u.opts.Region, now); err != nil {
		return fmt.Errorf("KVS PutMedia: signing: %w", err)
	}

	c := &conn{lastAck: now, acked: make(chan struct{}, 1), stopCh: make(chan struct{})}
	writerDone := make(chan error, 1)
	go func() { writerDone <- u.write(sctx, pw, c, first, renewAt) }()

	resp, err := u.http.Do(req)
	answered.Store(true)
	if ctx.Err() != nil && err == nil && context.Cause(sctx) != nil {
		resp.Body.Close()
		err = ctx.Err()
	}
	if err != nil {
		c.stop()
		pr.CloseWithError(err)
		<-writerDone
		u.count(func(s *UploaderStats) { s.ConnectErrors++ })
		if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return fmt.Errorf("KVS PutMedia %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.stop()
		pr.CloseWithError(errors.New("refused"))
		<-writerDone
		u.count(func(s *UploaderStats) { s.ConnectErrors++ })
		return u.refused(resp)
	}
	u.count(func(s *UploaderStats) { s.Connections++; s.Connected = true; s.StreamEndpoint = endpoint })
	defer u.count(func(s *UploaderStats) { s.Connected = false })
	u.log.Info("KVS PutMedia connected", zap.String("endpoint", endpoint), zap.Time("renew_at", renewAt),
		zap.Uint64("first_fragment", first.Seq), zap.Time("first_captured", first.Wall))

	readerDone := make(chan error, 1)
	go func() { readerDone <- u.readAcks(resp.Body, c, abort) }()

	// Watch for silence: fragments outstanding and no acknowledgement for AckTimeout.
	watch := time.NewTicker(min(u.opts.AckTimeout/4, time.Second))
	defer watch.Stop()
	var writeErr error
	writing := true
	for {
		select {
		case writeErr = <-writerDone:
			writing = false
			if writeErr != nil {
				abort(writeErr)
			}
			writerDone = nil
		case rerr := <-readerDone:
			if writing {
				c.stop()
				pr.CloseWithError(io.ErrClosedPipe)
				writeErr = <-writerDone
			}
			return u.sessionEnd(rerr, writeErr, c)
		case <-watch.C:
			c.mu.Lock()
			silent := len(c.inflight) > 0 && u.opts.Now().Sub(latest(c.lastAck, c.inflight[0].at)) > u.opts.AckTimeout
			c.mu.Unlock()
			if silent {
				abort(fmt.Errorf("no acknowledgement from KVS for %s with %d fragments outstanding", u.opts.AckTimeout, c.outstanding()))
			}
		case <-ctx.Done():
			// Stop sending, let the last acknowledgements come in, then leave.
			if writing {
				c.stop()
				writing = false
			}
			select {
			case <-readerDone:
			case <-time.After(u.opts.FinishTimeout):
			}
			abort(nil)
			return nil
		}
	}
}

// sessionEnd explains why a connection ended.
func (u *Uploader) sessionEnd(readErr, writeErr error, c *conn) error {
	c.mu.Lock()
	endErr, left := c.endErr, len(c.inflight)
	c.mu.Unlock()
	switch {
	case errors.Is(endErr, errReconnect):
		return nil
	case endErr != nil:
		return endErr
	case writeErr != nil:
		return writeErr
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return fmt.Errorf("KVS PutMedia: reading acknowledgements: %w (%d fragments not yet persisted, sent again)", readErr, left)
	case left > 0:
		return fmt.Errorf("KVS PutMedia: the connection ended with %d fragments not yet persisted (sent again)", left)
	}
	return nil
}

// refused turns a PutMedia HTTP error into an error, fatal when retrying cannot help.
func (u *Uploader) refused(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	kind := resp.Header.Get("x-amzn-ErrorType")
	kind, _, _ = strings.Cut(kind, ":")
	msg := strings.TrimSpace(string(body))
	switch {
	case kind == "AccessDeniedException":
		return fmt.Errorf("%w: PutMedia on stream %q: access denied — the role behind credentials.role_alias needs kinesisvideo:PutMedia: %s", ErrFatal, u.opts.StreamName, msg)
	case kind == "ResourceNotFoundException":
		u.mu.Lock()
		u.ready = false
		u.mu.Unlock()
	case resp.StatusCode == http.StatusForbidden:
		u.invalidateCredentials()
	}
	return fmt.Errorf("KVS PutMedia refused: HTTP %d %s: %s", resp.StatusCode, kind, msg)
}

// waitFragment waits for the first waiting fragment after seq.
func (u *Uploader) waitFragment(ctx context.Context, after uint64, stop <-chan struct{}, idle time.Duration) (Fragment, error) {
	tick := time.NewTicker(time.Second) // age eviction and evicted reads
	defer tick.Stop()
	var idleC <-chan time.Time
	if idle > 0 {
		t := time.NewTimer(idle)
		defer t.Stop()
		idleC = t.C
	}
	for {
		if info, ok := u.opts.Spool.Next(after); ok {
			f, err := u.opts.Spool.Read(info.Seq)
			if errors.Is(err, ErrEvicted) {
				continue
			}
			if err != nil {
				// A record that no longer reads back cannot be sent: skip it for good.
				u.log.Error("spooled fragment unreadable: skipped", zap.Uint64("seq", info.Seq), zap.Error(err))
				_ = u.opts.Spool.Done(info.Seq)
				continue
			}
			return f, nil
		}
		select {
		case <-ctx.Done():
			return Fragment{}, ctx.Err()
		case <-stop:
			return Fragment{}, errStopped
		case <-idleC:
			return Fragment{}, errIdle
		case <-u.opts.Spool.Appended():
		case <-tick.C:
		}
	}
}

var (
	errStopped = errors.New("stopped")
	errIdle    = errors.New("idle")
)

// write sends the track header and then fragments in spool order until told to stop, the
// connection is due for renewal, or the track changes; then it closes the body cleanly.
func (u *Uploader) write(ctx context.Context, pw *io.PipeWriter, c *conn, f Fragment, renewAt time.Time) error {
	stop := c.stopCh
	header := f.Header
	if _, err := pw.Write(header); err != nil {
		return nil // the request failed; Do reports why
	}
	finish := func(why string) error {
		u.log.Debug("ending PutMedia connection", zap.String("why", why))
		// Close the last fragment, then wait for what is outstanding before ending the body,
		// so that the next connection (which replaces this one at KVS) need not resend it.
		if _, err := pw.Write(EndOfStream()); err != nil {
			return nil
		}
		deadline := time.NewTimer(u.opts.AckTimeout)
		defer deadline.Stop()
		for c.outstanding() > 0 {
			select {
			case <-c.acked:
			case <-deadline.C:
				return pw.Close()
			case <-ctx.Done():
				return nil
			}
		}
		return pw.Close()
	}
	for {
		if err := u.pace.wait(ctx, len(f.Cluster), stop); err != nil {
			return finish("stopping")
		}
		now := u.opts.Now()
		c.mu.Lock()
		c.inflight = append(c.inflight, sent{seq: f.Seq, timecode: f.Timecode, wall: f.Wall, at: now, size: len(f.Cluster)})
		c.mu.Unlock()
		if _, err := pw.Write(f.Cluster); err != nil {
			return nil // the connection broke; the reader reports it
		}
		u.mu.Lock()
		u.stats.SentFragments++
		u.stats.SentBytes += int64(len(f.Cluster))
		if u.retries[f.Seq] > 0 {
			u.stats.Resent++
		}
		u.retries[f.Seq]++
		if len(u.retries) > 4*u.opts.MaxInFlight {
			for seq := range u.retries { // evicted long ago: at most MaxInFlight are resent
				if seq+uint64(4*u.opts.MaxInFlight) < f.Seq {
					delete(u.retries, seq)
				}
			}
		}
		u.mu.Unlock()
		last := f.Seq
		// Wait for room in the window and for the next fragment.
		for c.outstanding() >= u.opts.MaxInFlight {
			select {
			case <-c.acked:
			case <-stop:
				return finish("stopping")
			case <-ctx.Done():
				return nil
			}
		}
		if !u.opts.Now().Before(renewAt) {
			return finish("renewal before the credentials expire")
		}
		// Caught up with the live edge and nothing new for a while (a motion recording ended):
		// end the connection, so that KVS closes and acknowledges the last fragment.
		idle := min(max(2*f.Duration+time.Second, 3*time.Second), u.opts.AckTimeout/2)
		next, err := u.waitFragment(ctx, last, stop, idle)
		if errors.Is(err, errIdle) {
			return finish("idle")
		}
		if err != nil {
			return finish("stopping")
		}
		if !bytes.Equal(next.Header, header) {
			u.log.Info("new track (SPS/PPS changed): starting a new PutMedia connection")
			return finish("new track")
		}
		f = next
	}
}

// ack is one acknowledgement event.
type ack struct {
	EventType        string `json:"EventType"`
	FragmentTimecode int64  `json:"FragmentTimecode"`
	FragmentNumber   string `json:"FragmentNumber"`
	ErrorID          int    `json:"ErrorId"`
	ErrorCode        string `json:"ErrorCode"`
}

// readAcks reads newline-separated JSON acknowledgements until the body ends.
func (u *Uploader) readAcks(body io.Reader, c *conn, abort context.CancelCauseFunc) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var a ack
		if err := json.Unmarshal(line, &a); err != nil {
			u.log.Warn("unreadable KVS acknowledgement", zap.ByteString("line", line), zap.Error(err))
			continue
		}
		if err := u.onAck(a, c); err != nil {
			c.end(err)
			if errors.Is(err, ErrFatal) {
				abort(err)
				return err
			}
			// Send nothing more; read what KVS still acknowledges until it ends the response.
		}
	}
	err := sc.Err()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// onAck applies one acknowledgement; an error ends the connection.
func (u *Uploader) onAck(a ack, c *conn) error {
	now := u.opts.Now()
	c.mu.Lock()
	c.lastAck = now
	i := -1
	for j, s := range c.inflight {
		if s.timecode == a.FragmentTimecode {
			i = j
			break
		}
	}
	var s sent
	if i >= 0 {
		s = c.inflight[i]
	}
	if i >= 0 && (a.EventType == "PERSISTED" || a.EventType == "ERROR") {
		c.inflight = append(c.inflight[:i], c.inflight[i+1:]...)
	}
	c.mu.Unlock()
	defer c.signal()
	u.count(func(st *UploaderStats) { st.Acks[a.EventType]++ })
	switch a.EventType {
	case "BUFFERING", "RECEIVED", "IDLE":
		return nil
	case "PERSISTED":
		if i < 0 {
			u.log.Debug("PERSISTED for a fragment not sent on this connection", zap.Int64("timecode", a.FragmentTimecode))
			return nil
		}
		if err := u.opts.Spool.Done(s.seq); err != nil {
			return err
		}
		u.mu.Lock()
		u.stats.Persisted++
		u.stats.PersistedBytes += int64(s.size)
		u.stats.LastPersisted = s.wall
		delete(u.retries, s.seq)
		u.mu.Unlock()
		return nil
	case "ERROR":
		u.count(func(st *UploaderStats) { st.Errors[a.ErrorID]++ })
		return u.onError(a, s, i >= 0)
	}
	u.log.Debug("unknown KVS acknowledgement", zap.String("event", a.EventType))
	return nil
}

// maxAttempts bounds how often a fragment is sent again after retryable errors.
const maxAttempts = 5

// onError handles an ERROR acknowledgement: skip the fragment for good, retry it on a new
// connection, or stop.
func (u *Uploader) onError(a ack, s sent, known bool) error {
	fields := []zap.Field{zap.Int("error_id", a.ErrorID), zap.String("meaning", ErrorMeaning(a.ErrorID)),
		zap.Int64("fragment_timecode", a.FragmentTimecode)}
	if known {
		fields = append(fields, zap.Uint64("seq", s.seq), zap.Time("captured", s.wall))
	}
	skip := func(why string) error {
		if known {
			u.log.Warn("KVS refused a fragment: skipped ("+why+")", fields...)
			u.count(func(st *UploaderStats) { st.Skipped++ })
			u.mu.Lock()
			delete(u.retries, s.seq)
			u.mu.Unlock()
			if err := u.opts.Spool.Done(s.seq); err != nil {
				return err
			}
		}
		// KVS may have ended the connection: start a clean one at once.
		return nil
	}
	switch a.ErrorID {
	case 4001, 4002, 4005, 4006, 4010, 4004:
		if err := skip("it can never be accepted"); err != nil {
			return err
		}
		return errReconnect
	case 4008:
		return fmt.Errorf("%w: KVS says stream %q is deleted or not active (ErrorId 4008): create it again, or fix recording.kvs.stream_name", ErrFatal, u.opts.StreamName)
	case 4009, 4011, 4012:
		return fmt.Errorf("%w: KVS refused the stream's data (ErrorId %d, %s): check the stream's KMS key and the role's permissions", ErrFatal, a.ErrorID, ErrorMeaning(a.ErrorID))
	}
	if known {
		u.mu.Lock()
		n := u.retries[s.seq]
		u.mu.Unlock()
		if n >= maxAttempts {
			if err := skip(fmt.Sprintf("still refused after %d attempts", n)); err != nil {
				return err
			}
			return errReconnect
		}
	}
	u.log.Warn("KVS reported an error: sending again on a new connection", fields...)
	return fmt.Errorf("KVS ErrorId %d (%s) for fragment %d", a.ErrorID, ErrorMeaning(a.ErrorID), a.FragmentTimecode)
}

// errReconnect ends a connection that should be replaced at once.
var errReconnect = errors.New("reconnect")

// ErrorMeaning explains a PutMedia ErrorId.
func ErrorMeaning(id int) string {
	switch id {
	case 4000:
		return "error reading the data"
	case 4001:
		return "fragment larger than 50 MB"
	case 4002:
		return "fragment longer than 10 s"
	case 4003:
		return "connection open too long"
	case 4004:
		return "fragment timecode lower than the previous one"
	case 4005:
		return "more than one track"
	case 4006:
		return "invalid Matroska"
	case 4007:
		return "invalid producer timestamp"
	case 4008:
		return "stream deleted or not active"
	case 4009:
		return "KMS key access denied"
	case 4010:
		return "track number mismatch"
	case 5000:
		return "KVS internal error"
	case 5001:
		return "KVS failed to persist the fragment"
	}
	return "ErrorId " + strconv.Itoa(id)
}

func (u *Uploader) count(f func(*UploaderStats)) {
	u.mu.Lock()
	f(&u.stats)
	u.mu.Unlock()
}

// pacer spaces fragments to a byte rate (a burst of one second allowed) and KVS's fragment rate.
type pacer struct {
	mu          sync.Mutex
	bytesPerSec float64
	minGap      time.Duration
	nextBytes   time.Time // when the byte budget allows the next send
	nextFrag    time.Time
}

func (p *pacer) wait(ctx context.Context, n int, stop <-chan struct{}) error {
	p.mu.Lock()
	now := time.Now()
	if p.nextBytes.Before(now.Add(-time.Second)) {
		p.nextBytes = now.Add(-time.Second) // at most one second of unused budget
	}
	at := latest(p.nextBytes, p.nextFrag, now)
	p.nextBytes = p.nextBytes.Add(time.Duration(float64(n) / p.bytesPerSec * float64(time.Second)))
	p.nextFrag = at.Add(p.minGap)
	p.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errStopped
	}
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// skipStored marks as done the waiting fragments that KVS already stored: those sent on a lost
// connection, and after a restart the first MaxInFlight of the spool (the previous run may
// have sent them). It asks ListFragments for their timecode range.
func (u *Uploader) skipStored(ctx context.Context, creds aws.Credentials) {
	u.mu.Lock()
	if !u.opts.Deduplicate || u.noList {
		u.mu.Unlock()
		return
	}
	restart := !u.checked
	var candidates []FragmentInfo
	after := uint64(0)
	for len(candidates) < u.opts.MaxInFlight {
		info, ok := u.opts.Spool.Next(after)
		if !ok || !restart && u.retries[info.Seq] == 0 {
			break
		}
		candidates = append(candidates, info)
		after = info.Seq
	}
	u.mu.Unlock()
	if len(candidates) == 0 {
		u.checked = true
		return
	}
	stored, err := u.listFragments(ctx, creds, candidates[0].Timecode, candidates[len(candidates)-1].Timecode)
	if err != nil {
		u.mu.Lock()
		u.noList = true
		u.mu.Unlock()
		u.log.Info("ListFragments unavailable: fragments that may have reached KVS are sent again (possible duplicates)", zap.Error(err))
		return
	}
	u.checked = true
	for _, c := range candidates {
		if !stored[c.Timecode] {
			continue
		}
		if err := u.opts.Spool.Done(c.Seq); err != nil {
			u.log.Warn("spool", zap.Error(err))
			return
		}
		u.mu.Lock()
		u.stats.AlreadyStored++
		delete(u.retries, c.Seq)
		u.mu.Unlock()
		u.log.Info("fragment already in KVS (its acknowledgement was lost): not sent again", zap.Uint64("seq", c.Seq), zap.Int64("timecode", c.Timecode))
	}
}

// listFragments returns the producer timecodes (ms) KVS holds between from and to.
func (u *Uploader) listFragments(ctx context.Context, creds aws.Credentials, from, to int64) (map[int64]bool, error) {
	out, err := u.kv.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(u.opts.StreamName), APIName: kvtypes.APINameListFragments})
	if err != nil {
		return nil, err
	}
	endpoint := strings.TrimSuffix(aws.ToString(out.DataEndpoint), "/") + "/listFragments"
	stored := map[int64]bool{}
	next := ""
	for range 100 {
		in := map[string]any{"StreamName": u.opts.StreamName, "MaxResults": 1000,
			"FragmentSelector": map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
				"TimestampRange": map[string]any{"StartTimestamp": float64(from) / 1000, "EndTimestamp": float64(to+1) / 1000}}}
		if next != "" {
			in = map[string]any{"StreamName": u.opts.StreamName, "NextToken": next, "MaxResults": 1000}
		}
		body, _ := json.Marshal(in)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			cancel()
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256(body)
		if err := u.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesisvideo", u.opts.Region, u.opts.Now()); err != nil {
			cancel()
			return nil, err
		}
		resp, err := u.http.Do(req)
		if err != nil {
			cancel()
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		cancel()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("ListFragments: HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), bytes.TrimSpace(b))
		}
		var res struct {
			Fragments []struct {
				ProducerTimestamp float64 `json:"ProducerTimestamp"`
			} `json:"Fragments"`
			NextToken string `json:"NextToken"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, fmt.Errorf("ListFragments: %w", err)
		}
		for _, f := range res.Fragments {
			stored[int64(math.Round(f.ProducerTimestamp*1000))] = true
		}
		if res.NextToken == "" {
			return stored, nil
		}
		next = res.NextToken
	}
	return stored, nil
}
