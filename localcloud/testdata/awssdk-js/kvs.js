// Calls localcloud's KVS streams with AWS's own JavaScript SDK v3 clients, as an application
// reading recordings would: GetDataEndpoint, ListFragments, GetMediaForFragmentList, GetClip
// and GetHLSStreamingSessionURL. Prints one JSON object (see localcloud/kvsawssdk_test.go).
//   node kvs.js <control plane URL> <region> <access key id> <secret> <stream> <start s> <end s> <clip file>
const fs = require("fs");
const { KinesisVideoClient, GetDataEndpointCommand, DescribeStreamCommand } = require("@aws-sdk/client-kinesis-video");
const {
  KinesisVideoArchivedMediaClient, ListFragmentsCommand, GetClipCommand,
  GetHLSStreamingSessionURLCommand, GetMediaForFragmentListCommand,
} = require("@aws-sdk/client-kinesis-video-archived-media");

async function bytesOf(payload) {
  const chunks = [];
  for await (const c of payload) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function main() {
  const [endpoint, region, accessKeyId, secretAccessKey, stream, start, end, clipFile] = process.argv.slice(2);
  const credentials = { accessKeyId, secretAccessKey };
  const out = {};
  const kv = new KinesisVideoClient({ endpoint, region, credentials });
  out.status = (await kv.send(new DescribeStreamCommand({ StreamName: stream }))).StreamInfo.Status;
  const dataEndpoint = async (APIName) => (await kv.send(new GetDataEndpointCommand({ StreamName: stream, APIName }))).DataEndpoint;
  const range = { StartTimestamp: new Date(Number(start) * 1000), EndTimestamp: new Date(Number(end) * 1000) };

  const list = new KinesisVideoArchivedMediaClient({ endpoint: await dataEndpoint("LIST_FRAGMENTS"), region, credentials });
  const frags = await list.send(new ListFragmentsCommand({
    StreamName: stream, FragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP", TimestampRange: range },
  }));
  out.fragments = frags.Fragments.map((f) => ({
    number: f.FragmentNumber, size: f.FragmentSizeInBytes, lengthMs: f.FragmentLengthInMilliseconds,
    producerMs: f.ProducerTimestamp.getTime(), serverMs: f.ServerTimestamp.getTime(),
  }));

  const media = new KinesisVideoArchivedMediaClient({ endpoint: await dataEndpoint("GET_MEDIA_FOR_FRAGMENT_LIST"), region, credentials });
  const mfl = await media.send(new GetMediaForFragmentListCommand({ StreamName: stream, Fragments: frags.Fragments.map((f) => f.FragmentNumber) }));
  out.fragmentListBytes = (await bytesOf(mfl.Payload)).length;
  out.fragmentListContentType = mfl.ContentType;

  const clipClient = new KinesisVideoArchivedMediaClient({ endpoint: await dataEndpoint("GET_CLIP"), region, credentials });
  const clip = await clipClient.send(new GetClipCommand({
    StreamName: stream, ClipFragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP", TimestampRange: range },
  }));
  const mp4 = await bytesOf(clip.Payload);
  fs.writeFileSync(clipFile, mp4);
  out.clipContentType = clip.ContentType;
  out.clipBytes = mp4.length;

  const hlsClient = new KinesisVideoArchivedMediaClient({ endpoint: await dataEndpoint("GET_HLS_STREAMING_SESSION_URL"), region, credentials });
  const hls = await hlsClient.send(new GetHLSStreamingSessionURLCommand({
    StreamName: stream, PlaybackMode: "ON_DEMAND", ContainerFormat: "FRAGMENTED_MP4",
    HLSFragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP", TimestampRange: range },
  }));
  out.hlsURL = hls.HLSStreamingSessionURL;
  const master = await fetch(hls.HLSStreamingSessionURL);
  out.hlsMaster = await master.text();

  try {
    await clipClient.send(new GetClipCommand({
      StreamName: stream, ClipFragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP", TimestampRange: { StartTimestamp: new Date(1000), EndTimestamp: new Date(2000) } },
    }));
  } catch (e) {
    out.emptyClipError = e.name;
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: `${e.name}: ${e.message}` }));
  process.exit(0);
});
