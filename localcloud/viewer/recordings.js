// edgecam's recordings page: the fragments of a Kinesis video stream on a timeline, and
// playback of any recorded span, through the public KVS APIs as AWS's SDKs call them
// (ListStreams, GetDataEndpoint, ListFragments, GetClip; SigV4 from sigv4.js), so it works with
// AWS and with localcloud. It reads viewer.json next to it; ?stream=NAME picks the stream.
// window.edgecamRecordings exposes what the page shows (for tests).
'use strict';

const $ = (id) => document.getElementById(id);
const rec = window.edgecamRecordings = { state: 'starting', stream: '', fragments: 0, spans: [], motion: [], playing: null, currentTime: 0, framesDecoded: 0, error: '' };
function log(msg) { $('log').textContent = (new Date().toISOString().slice(11, 19) + ' ' + msg + '\n' + $('log').textContent).slice(0, 4000); }
const fmt = (ms) => new Date(ms).toLocaleString();
const secs = (ms) => (ms / 1000).toFixed(1) + ' s';

let cfg;
const endpoints = {};
async function dataEndpoint(stream, api) {
  const key = stream + ' ' + api;
  if (!endpoints[key]) {
    endpoints[key] = (await signedPost(cfg, cfg.controlPlaneUrl + '/getDataEndpoint', { StreamName: stream, APIName: api })).DataEndpoint;
  }
  return endpoints[key];
}

// fragments lists a stream's fragments recorded in [from, to] (epoch ms), oldest first.
async function fragments(stream, from, to) {
  const url = (await dataEndpoint(stream, 'LIST_FRAGMENTS')) + '/listFragments';
  const out = [];
  let token;
  do {
    const body = { StreamName: stream, MaxResults: 1000,
      FragmentSelector: { FragmentSelectorType: 'PRODUCER_TIMESTAMP', TimestampRange: { StartTimestamp: from / 1000, EndTimestamp: to / 1000 } } };
    if (token) body.NextToken = token;
    const page = await signedPost(cfg, url, body);
    out.push(...page.Fragments);
    token = page.NextToken;
  } while (token);
  return out.map((f) => ({ number: f.FragmentNumber, start: Math.round(f.ProducerTimestamp * 1000), length: f.FragmentLengthInMilliseconds }))
    .sort((a, b) => a.start - b.start);
}

// spansOf merges fragments that follow each other (gaps under a second) into recorded spans.
function spansOf(list) {
  const spans = [];
  for (const f of list) {
    const last = spans[spans.length - 1];
    if (last && f.start - last.end < 1000) {
      last.end = Math.max(last.end, f.start + f.length); last.fragments++;
    } else {
      spans.push({ start: f.start, end: f.start + f.length, fragments: 1 });
    }
  }
  return spans;
}

// motionOf returns the motion intervals localcloud saw the thing named like the stream
// publish (edgecam/<thing>/events/motion); none where that is not served (AWS).
async function motionOf(stream) {
  try {
    const resp = await fetch(`/kvs/streams/${encodeURIComponent(stream)}/motion`, { cache: 'no-store' });
    if (!resp.ok) return [];
    return (await resp.json()).motion.map((m) => ({ from: Date.parse(m.preRollFrom || m.start), start: Date.parse(m.start), end: m.end ? Date.parse(m.end) : Date.now() }));
  } catch (e) {
    return [];
  }
}

// play fetches the span as an MP4 clip (GetClip: at most 200 fragments) and plays it.
async function play(span, i) {
  const url = (await dataEndpoint(rec.stream, 'GET_CLIP')) + '/getClip';
  log(`clip ${fmt(span.start)} – ${fmt(span.end)}`);
  const resp = await signedFetch(cfg, url, { StreamName: rec.stream,
    ClipFragmentSelector: { FragmentSelectorType: 'PRODUCER_TIMESTAMP', TimestampRange: { StartTimestamp: span.start / 1000, EndTimestamp: span.end / 1000 } } });
  const blob = await resp.blob();
  const v = $('video');
  if (v.src) URL.revokeObjectURL(v.src);
  v.src = URL.createObjectURL(new Blob([blob], { type: 'video/mp4' }));
  rec.playing = i;
  $('playing').textContent = `${fmt(span.start)} (${secs(span.end - span.start)})`;
  document.querySelectorAll('#timeline .span').forEach((el, j) => el.classList.toggle('playing', j === i));
  await v.play();
}

async function refresh() {
  const stream = $('stream').value;
  rec.stream = stream;
  const to = Date.now(), from = to - Number($('window').value) * 1000;
  const list = await fragments(stream, from, to);
  const spans = spansOf(list);
  const motion = (await motionOf(stream)).filter((m) => m.end >= from && m.from <= to);
  rec.motion = motion;
  rec.fragments = list.length;
  rec.spans = spans;
  $('count').textContent = list.length;
  $('recorded').textContent = secs(list.reduce((n, f) => n + f.length, 0));
  $('from').textContent = fmt(from);
  $('to').textContent = fmt(to);
  const tl = $('timeline');
  tl.textContent = '';
  const tbody = $('spans');
  tbody.textContent = '';
  spans.forEach((s, i) => {
    const el = document.createElement('div');
    el.className = 'span';
    el.style.left = ((s.start - from) / (to - from) * 100) + '%';
    el.style.width = ((s.end - s.start) / (to - from) * 100) + '%';
    el.title = `${fmt(s.start)} – ${fmt(s.end)}`;
    el.onclick = (e) => { e.stopPropagation(); play(s, i).catch(fail); };
    tl.appendChild(el);
    const tr = document.createElement('tr');
    tr.innerHTML = `<td>${fmt(s.start)}</td><td>${fmt(s.end)}</td><td>${secs(s.end - s.start)}</td><td>${s.fragments}</td><td><button>play</button></td>`;
    tr.querySelector('button').onclick = () => play(s, i).catch(fail);
    tbody.appendChild(tr);
  });
  for (const m of motion) {
    const el = document.createElement('div');
    el.className = 'motion';
    el.style.left = ((Math.max(m.from, from) - from) / (to - from) * 100) + '%';
    el.style.width = ((m.end - Math.max(m.from, from)) / (to - from) * 100) + '%';
    el.title = `motion ${fmt(m.start)} – ${fmt(m.end)} (pre-roll from ${fmt(m.from)})`;
    tl.appendChild(el);
  }
  $('motion').textContent = motion.length;
  rec.state = 'listed';
  log(`${stream}: ${list.length} fragments in ${spans.length} spans`);
}

function fail(e) { rec.error = String(e.message || e); rec.state = 'error'; log(rec.error); }

async function main() {
  cfg = await (await fetch('viewer.json', { cache: 'no-store' })).json();
  const wanted = new URLSearchParams(location.search).get('stream');
  const names = (await signedPost(cfg, cfg.controlPlaneUrl + '/listStreams', {})).StreamInfoList.map((s) => s.StreamName);
  if (wanted && !names.includes(wanted)) names.unshift(wanted);
  if (!names.length) throw new Error('no streams yet: record into Kinesis Video Streams first');
  for (const n of names) {
    const o = document.createElement('option');
    o.value = o.textContent = n;
    $('stream').appendChild(o);
  }
  $('stream').value = wanted || names[0];
  $('stream').onchange = $('window').onchange = $('refresh').onclick = () => refresh().catch(fail);
  const v = $('video');
  setInterval(() => {
    rec.currentTime = v.currentTime;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    rec.framesDecoded = q ? q.totalVideoFrames : 0;
  }, 250);
  await refresh();
  if (rec.spans.length && new URLSearchParams(location.search).has('play')) await play(rec.spans[rec.spans.length - 1], rec.spans.length - 1);
}

main().catch(fail);
