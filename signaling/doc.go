// Package signaling connects a camera to an Amazon Kinesis Video Streams WebRTC signaling
// channel as the channel's MASTER: the control plane (describe or create the channel, its
// endpoints, ICE servers), the SigV4-presigned WebSocket, the message codec, and a Master that
// keeps the connection up (pings, reconnects with back-off, GO_AWAY, the 1-hour limit, clock
// skew). It knows no WebRTC media: offers, answers and candidates are plain Go values, so the
// package can be used with any WebRTC stack. Wire formats: ../shared/WIRE-FORMATS.md §5.
package signaling
