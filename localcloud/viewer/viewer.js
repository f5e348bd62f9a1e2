// edgecam's live-view page: a Kinesis Video Streams WebRTC VIEWER written against the
// public KVS signaling API (SigV4 in WebCrypto), so it works with AWS and with localcloud.
// It reads viewer.json (region, channelName, controlPlaneUrl, access key pair) next to it;
// ?channel=NAME picks another channel. window.edgecamStats exposes what the page shows.
'use strict';

// SigV4 helpers (signedPost, presign) come from sigv4.js.

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
