package signaling

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
)

// ErrChannelNotFound is wrapped by the error for a channel that does not exist.
var ErrChannelNotFound = errors.New("signaling channel not found")

// Channel describes a signaling channel.
type Channel struct {
	Name         string
	ARN          string
	Status       string // CREATING, ACTIVE, UPDATING, DELETING
	Type         string // SINGLE_MASTER
	MessageTTL   time.Duration
	Version      string
	CreationTime time.Time
}

// Role is the role a client connects in.
type Role string

// Roles.
const (
	RoleMaster Role = "MASTER"
	RoleViewer Role = "VIEWER"
)

// Endpoints are a channel's data-plane endpoints for one role.
type Endpoints struct {
	WSS   string // the signaling WebSocket
	HTTPS string // GetIceServerConfig
}

// DescribeChannel returns the channel called name. A missing channel gives an error that
// wraps ErrChannelNotFound.
func (c *Client) DescribeChannel(ctx context.Context, name string) (Channel, error) {
	out, err := c.kv.DescribeSignalingChannel(ctx, &kinesisvideo.DescribeSignalingChannelInput{ChannelName: aws.String(name)})
	if err != nil {
		return Channel{}, c.apiError("DescribeSignalingChannel", name, err)
	}
	if out.ChannelInfo == nil {
		return Channel{}, fmt.Errorf("signaling: DescribeSignalingChannel %q: empty answer from %s", name, c.endpointName())
	}
	return channelFrom(out.ChannelInfo), nil
}

// CreateChannel creates a SINGLE_MASTER channel (message TTL 60 s) and waits until it is
// ACTIVE. A channel created meanwhile by someone else is fine.
func (c *Client) CreateChannel(ctx context.Context, name string, tags map[string]string) (Channel, error) {
	in := &kinesisvideo.CreateSignalingChannelInput{
		ChannelName:               aws.String(name),
		ChannelType:               types.ChannelTypeSingleMaster,
		SingleMasterConfiguration: &types.SingleMasterConfiguration{MessageTtlSeconds: aws.Int32(60)},
	}
	for k, v := range tags {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	_, err := c.kv.CreateSignalingChannel(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return Channel{}, c.apiError("CreateSignalingChannel", name, err)
	}
	if err == nil {
		c.log.Info("created the signaling channel", zap.String("channel", name))
	}
	return c.waitActive(ctx, name)
}

// EnsureChannel describes the channel and, when it is missing and create is true, creates
// it. It returns once the channel is ACTIVE.
func (c *Client) EnsureChannel(ctx context.Context, name string, create bool, tags map[string]string) (Channel, error) {
	ch, err := c.DescribeChannel(ctx, name)
	switch {
	case errors.Is(err, ErrChannelNotFound) && create:
		return c.CreateChannel(ctx, name, tags)
	case err != nil:
		return Channel{}, err
	case ch.Status == string(types.StatusActive):
		return ch, nil
	default:
		return c.waitActive(ctx, name)
	}
}

// waitActive polls until the channel is ACTIVE.
func (c *Client) waitActive(ctx context.Context, name string) (Channel, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ActiveTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		ch, err := c.DescribeChannel(ctx, name)
		if err == nil {
			switch ch.Status {
			case string(types.StatusActive):
				return ch, nil
			case string(types.StatusDeleting):
				return Channel{}, fmt.Errorf("signaling: channel %q is being deleted; create it again once it is gone", name)
			}
		} else if !errors.Is(err, ErrChannelNotFound) {
			return Channel{}, err
		}
		select {
		case <-ctx.Done():
			return Channel{}, fmt.Errorf("signaling: channel %q did not become ACTIVE within %s (last status %q): %w", name, c.opts.ActiveTimeout, ch.Status, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Endpoints returns the channel's WSS and HTTPS endpoints for role.
func (c *Client) Endpoints(ctx context.Context, channelARN string, role Role) (Endpoints, error) {
	out, err := c.kv.GetSignalingChannelEndpoint(ctx, &kinesisvideo.GetSignalingChannelEndpointInput{
		ChannelARN: aws.String(channelARN),
		SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
			Protocols: []types.ChannelProtocol{types.ChannelProtocolWss, types.ChannelProtocolHttps},
			Role:      types.ChannelRole(role),
		},
	})
	if err != nil {
		return Endpoints{}, c.apiError("GetSignalingChannelEndpoint", channelARN, err)
	}
	var ep Endpoints
	for _, r := range out.ResourceEndpointList {
		switch r.Protocol {
		case types.ChannelProtocolWss:
			ep.WSS = aws.ToString(r.ResourceEndpoint)
		case types.ChannelProtocolHttps:
			ep.HTTPS = aws.ToString(r.ResourceEndpoint)
		}
	}
	if ep.WSS == "" || ep.HTTPS == "" {
		return Endpoints{}, fmt.Errorf("signaling: GetSignalingChannelEndpoint %s: answer lacks the WSS or HTTPS endpoint (%+v)", channelARN, ep)
	}
	return ep, nil
}

func channelFrom(ci *types.ChannelInfo) Channel {
	ch := Channel{
		Name:    aws.ToString(ci.ChannelName),
		ARN:     aws.ToString(ci.ChannelARN),
		Status:  string(ci.ChannelStatus),
		Type:    string(ci.ChannelType),
		Version: aws.ToString(ci.Version),
	}
	if ci.CreationTime != nil {
		ch.CreationTime = *ci.CreationTime
	}
	if ci.SingleMasterConfiguration != nil && ci.SingleMasterConfiguration.MessageTtlSeconds != nil {
		ch.MessageTTL = time.Duration(*ci.SingleMasterConfiguration.MessageTtlSeconds) * time.Second
	}
	return ch
}

func (c *Client) endpointName() string {
	if c.opts.Endpoint != "" {
		return c.opts.Endpoint
	}
	return "kinesisvideo." + c.opts.Region + ".amazonaws.com"
}

// apiError turns an SDK error into one that says what to check; refused credentials are
// dropped, so that the next attempt fetches new ones.
func (c *Client) apiError(op, subject string, err error) error {
	c.checkRefusal(err)
	var (
		notFound *types.ResourceNotFoundException
		denied   *types.AccessDeniedException
		limit    *types.ClientLimitExceededException
		api      smithy.APIError
	)
	switch {
	case errors.As(err, &notFound):
		return fmt.Errorf("signaling: %s %q: %w in %s (%v) — check the channel name and region, or let the agent create it", op, subject, ErrChannelNotFound, c.opts.Region, err)
	case errors.As(err, &denied):
		return fmt.Errorf("signaling: %s %q: access denied: %w — the credentials' role needs kinesisvideo:%s on this channel", op, subject, err, op)
	case errors.As(err, &limit):
		return fmt.Errorf("signaling: %s %q: throttled: %w — retrying later", op, subject, err)
	case errors.As(err, &api):
		switch api.ErrorCode() {
		case "InvalidSignatureException", "SignatureDoesNotMatch", "UnrecognizedClientException", "IncompleteSignatureException", "MissingAuthenticationTokenException", "ExpiredTokenException":
			return fmt.Errorf("signaling: %s %q: the request's signature was refused: %w — check the device's clock and its AWS credentials", op, subject, err)
		}
		return fmt.Errorf("signaling: %s %q: %w", op, subject, err)
	}
	return fmt.Errorf("signaling: %s %q at %s: %w — check the network and the control-plane endpoint", op, subject, c.endpointName(), err)
}
