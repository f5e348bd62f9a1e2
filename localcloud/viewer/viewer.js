// edgecam's live-view page: a Kinesis Video Streams WebRTC VIEWER written against the
// public KVS signaling API (SigV4 in WebCrypto), so it works with AWS and with localcloud.
// It reads viewer.json (region, channelName, controlPlaneUrl, access key pair) next to it;
// ?channel=NAME picks another channel. window.edgecamStats exposes what the page shows.
'use strict';

const te = new TextEncoder();
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (s) => hex(await crypto.subtle.digest('SHA-256', te.encode(s)));
async function hmac(key, msg) {
  const k = await crypto.subtle.importKey('raw', typeof key === 'string' ? te.encode(key) : key,
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, te.encode(msg)));
}
// RFC 3986 encoding, as SigV4 wants it.
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const amzDate = (d) => d.toISOString().replace(/[:-]|\.\d{3}/g, '');

async function signingKey(secret, date, region, service) {
  let k = await hmac('AWS4' + secret, date);
  k = await hmac(k, region);
  k = await hmac(k, service);
  return hmac(k, 'aws4_request');
}

// signedPost sends a SigV4 (header) signed JSON POST and returns the parsed answer.
async function signedPost(cfg, url, body) {
  const u = new URL(url);
  const now = new Date(Date.now() + (cfg.skew || 0));
  const date = amzDate(now), day = date.slice(0, 8);
  const payload = JSON.stringify(body);
  const canonical = ['POST', u.pathname, '', 'content-type:application/json', 'host:' + u.host, 'x-amz-date:' + date, '',
    'content-type;host;x-amz-date', await sha256(payload)].join('\n');
  const scope = `${day}/${cfg.region}/kinesisvideo/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256(canonical)].join('\n');
  const sig = hex(await hmac(await signingKey(cfg.secretAccessKey, day, cfg.region, 'kinesisvideo'), toSign));
  const resp = await fetch(url, {
    method: 'POST', body: payload, headers: {
      'Content-Type': 'application/json', 'X-Amz-Date': date,
      'Authorization': `AWS4-HMAC-SHA256 Credential=${cfg.accessKeyId}/${scope}, SignedHeaders=content-type;host;x-amz-date, Signature=${sig}`,
    },
  });
  const text = await resp.text();
  if (!resp.ok) {
    // Correct our clock from the service's when it says the signature is out of date.
    const server = Date.parse(resp.headers.get('Date'));
    if (resp.status === 403 && server && !cfg.skewed) { cfg.skew = server - Date.now(); cfg.skewed = true; return signedPost(cfg, url, body); }
    throw new Error(`${u.pathname}: ${resp.status} ${text}`);
  }
  return text ? JSON.parse(text) : {};
}

// presign returns the viewer's signaling WebSocket URL, SigV4 query-presigned.
async function presign(cfg, wss, arn, clientId) {
  const u = new URL(wss);
  const now = new Date(Date.now() + (cfg.skew || 0));
  const date = amzDate(now), day = date.slice(0, 8);
  const scope = `${day}/${cfg.region}/kinesisvideo/aws4_request`;
  const q = {
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-ChannelARN': arn, 'X-Amz-ClientId': clientId,
    'X-Amz-Credential': `${cfg.accessKeyId}/${scope}`, 'X-Amz-Date': date, 'X-Amz-Expires': '299', 'X-Amz-SignedHeaders': 'host',
  };
  if (cfg.sessionToken) q['X-Amz-Security-Token'] = cfg.sessionToken;
  const query = Object.keys(q).sort().map((k) => enc(k) + '=' + enc(q[k])).join('&');
  const canonical = ['GET', u.pathname || '/', query, 'host:' + u.host, '', 'host', await sha256('')].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256(canonical)].join('\n');
  const sig = hex(await hmac(await signingKey(cfg.secretAccessKey, day, cfg.region, 'kinesisvideo'), toSign));
  return `${u.origin}${u.pathname}?${query}&X-Amz-Signature=${sig}`;
}

const $ = (id) => document.getElementById(id);
const stats = window.edgecamStats = { state: 'starting', framesDecoded: 0, bitrateKbps: 0, width: 0, height: 0, error: '' };
function log(msg) { $('log').textContent = (new Date().toISOString().slice(11, 19) + ' ' + msg + '\n' + $('log').textContent).slice(0, 4000); }
function setState(s) { stats.state = s; $('state').textContent = s; $('state').className = s; }

async function main() {
  const cfg = await (await fetch('viewer.json', { cache: 'no-store' })).json();
  const params = new URLSearchParams(location.search);
  const channel = params.get('channel') || cfg.channelName;
  const base = params.get('controlPlane') || cfg.controlPlaneUrl;
  $('channel').textContent = channel;
  const clientId = 'viewer-' + Math.random().toString(36).slice(2, 10);

  setState('finding the channel');
  let info;
  for (;;) {
    try { info = (await signedPost(cfg, base + '/describeSignalingChannel', { ChannelName: channel })).ChannelInfo; if (info.ChannelStatus === 'ACTIVE') break; }
    catch (e) { log('waiting for the camera: ' + e.message); }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const arn = info.ChannelARN;
  const ep = await signedPost(cfg, base + '/getSignalingChannelEndpoint', {
    ChannelARN: arn, SingleMasterChannelEndpointConfiguration: { Protocols: ['WSS', 'HTTPS'], Role: 'VIEWER' },
  });
  const endpoint = (p) => ep.ResourceEndpointList.find((e) => e.Protocol === p).ResourceEndpoint;
  const ice = await signedPost(cfg, endpoint('HTTPS') + '/v1/get-ice-server-config', { ChannelARN: arn, ClientId: clientId, Service: 'TURN' });
  const iceServers = (ice.IceServerList || []).map((s) => ({ urls: s.Uris, username: s.Username, credential: s.Password }));
  if (!base.startsWith('http://127.') && !base.startsWith('http://localhost')) iceServers.push({ urls: `stun:stun.kinesisvideo.${cfg.region}.amazonaws.com:443` });

  const pc = new RTCPeerConnection({ iceServers });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (e) => { $('video').srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => setState(pc.connectionState);

  setState('signaling');
  const ws = new WebSocket(await presign(cfg, endpoint('WSS'), arn, clientId));
  const send = (action, payload) => ws.send(JSON.stringify({ action, messagePayload: btoa(JSON.stringify(payload)) }));
  const early = [];
  let answered = false;
  pc.onicecandidate = (e) => { if (e.candidate) send('ICE_CANDIDATE', e.candidate.toJSON()); };
  ws.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    const type = m.messageType || m.MessageType;
    const payload = m.messagePayload || m.MessagePayload;
    if (type === 'SDP_ANSWER') {
      await pc.setRemoteDescription(JSON.parse(atob(payload)));
      answered = true;
      for (const c of early.splice(0)) await pc.addIceCandidate(c);
    } else if (type === 'ICE_CANDIDATE') {
      const c = JSON.parse(atob(payload));
      if (answered) await pc.addIceCandidate(c); else early.push(c);
    } else if (type === 'STATUS_RESPONSE') {
      log('signaling: ' + JSON.stringify(m.statusResponse));
    }
  };
  ws.onclose = () => { if (pc.connectionState !== 'connected') log('signaling connection closed'); };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('signaling WebSocket refused')); });
  await pc.setLocalDescription(await pc.createOffer());
  send('SDP_OFFER', pc.localDescription.toJSON());

  let lastBytes = 0, lastTime = 0;
  setInterval(async () => {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      stats.framesDecoded = s.framesDecoded || 0;
      stats.width = s.frameWidth || 0; stats.height = s.frameHeight || 0;
      if (lastTime) stats.bitrateKbps = Math.round((s.bytesReceived - lastBytes) * 8 / (s.timestamp - lastTime));
      lastBytes = s.bytesReceived; lastTime = s.timestamp;
    });
    $('frames').textContent = stats.framesDecoded;
    $('bitrate').textContent = stats.bitrateKbps;
    $('size').textContent = stats.width ? `${stats.width}x${stats.height}` : '–';
  }, 1000);
}

main().catch((e) => { stats.error = String(e.message || e); setState('error'); log(stats.error); });
