// SigV4 in WebCrypto for localcloud's pages (live view and recordings): signed JSON POSTs
// and presigned WebSocket URLs for the KVS APIs, with the clock corrected from the service's
// Date when it calls a signature out of date. Works with AWS and with localcloud.
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

// signedFetch sends a SigV4 (header) signed JSON POST and returns the Response; a 403 for an
// out-of-date signature corrects the clock from the service's Date and tries once more.
async function signedFetch(cfg, url, body) {
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
  if (!resp.ok) {
    const server = Date.parse(resp.headers.get('Date'));
    if (resp.status === 403 && server && !cfg.skewed) { cfg.skew = server - Date.now(); cfg.skewed = true; return signedFetch(cfg, url, body); }
    throw new Error(`${u.pathname}: ${resp.status} ${await resp.text()}`);
  }
  return resp;
}

// signedPost is signedFetch for JSON answers.
async function signedPost(cfg, url, body) {
  const text = await (await signedFetch(cfg, url, body)).text();
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
