// viewer.js connects to a signaling channel as a VIEWER with AWS's own KVS WebRTC SDK for
// JavaScript (its SignalingClient and SigV4 request signer), sends the SDP offer in
// target.json (made by a pion viewer), and prints the camera's answer and ICE candidates as
// one JSON line. usage: node viewer.js TARGET.json
'use strict';
global.WebSocket = require('ws'); // Node 20 has no WebSocket of its own
const fs = require('fs');
const { SignalingClient, Role } = require('amazon-kinesis-video-streams-webrtc');

const t = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const client = new SignalingClient({
  channelARN: t.channelARN, channelEndpoint: t.wssEndpoint, clientId: t.clientId, role: Role.VIEWER,
  region: t.region, credentials: { accessKeyId: t.accessKeyId, secretAccessKey: t.secretAccessKey },
  systemClockOffset: 0,
});
const out = { candidates: [] };
const finish = (code) => { console.log(JSON.stringify(out)); client.close(); process.exit(code); };
const timer = setTimeout(() => { out.error = 'no answer within 15 s'; finish(1); }, 15000);
client.on('open', () => client.sendSdpOffer({ type: 'offer', sdp: t.offer }));
client.on('sdpAnswer', (answer) => {
  out.answer = answer;
  clearTimeout(timer);
  setTimeout(() => finish(0), 1500); // let the trickled candidates arrive
});
client.on('iceCandidate', (c) => out.candidates.push(c));
client.on('error', (e) => { out.error = String(e && e.message ? e.message : e); finish(1); });
client.open();
