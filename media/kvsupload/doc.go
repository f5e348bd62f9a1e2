// Package kvsupload uploads H.264 video to Amazon Kinesis Video Streams without the C++
// producer SDK: a Fragmenter turns the Hub's access units into Matroska clusters (one per
// GOP), a Spool keeps every fragment in a crash-safe log on disk until KVS acknowledges it as
// PERSISTED, and an Uploader streams the spool to PutMedia (SigV4, one long chunked request per
// stream, acknowledgements read as they arrive), draining a backlog in order at a bounded rate
// after an outage.
package kvsupload
