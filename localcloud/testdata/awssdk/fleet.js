// fleet.js runs fleet provisioning by claim with AWS's own IoT Device SDK v2 for
// JavaScript (aws-crt MQTT 5 + IotIdentityClientv2) and prints the outcome as one JSON line.
// usage: node fleet.js HOST PORT CA CLAIM_CERT CLAIM_KEY TEMPLATE SERIAL CSR_FILE|keys
'use strict';
const fs = require('fs');
const { mqtt5, iot } = require('aws-crt');
const { iotidentity } = require('aws-iot-device-sdk-v2');

async function main() {
  const [host, port, ca, cert, key, template, serial, csrFile] = process.argv.slice(2);
  const builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromPath(host, cert, key);
  builder.withPort(Number(port));
  builder.withCertificateAuthorityFromPath(undefined, ca);
  builder.withConnectProperties({ clientId: serial, keepAliveIntervalSeconds: 60 });
  const client = new mqtt5.Mqtt5Client(builder.build());
  const connected = new Promise((resolve, reject) => {
    client.on('connectionSuccess', resolve);
    client.on('connectionFailure', (e) => reject(new Error('connection failure: ' + e.error)));
  });
  client.start();
  await connected;
  const identity = iotidentity.IotIdentityClientv2.newFromMqtt5(client, {
    maxRequestResponseSubscriptions: 4,
    maxStreamingSubscriptions: 2,
    operationTimeoutInSeconds: 10,
  });
  const out = {};
  try {
    let created;
    if (csrFile === 'keys') {
      created = await identity.createKeysAndCertificate({});
      out.privateKeyPresent = typeof created.privateKey === 'string' && created.privateKey.includes('PRIVATE KEY');
    } else {
      created = await identity.createCertificateFromCsr({ certificateSigningRequest: fs.readFileSync(csrFile, 'utf8') });
    }
    out.certificateId = created.certificateId;
    out.certificatePemPresent = created.certificatePem.includes('BEGIN CERTIFICATE');
    out.tokenPresent = created.certificateOwnershipToken.length > 0;
    const registered = await identity.registerThing({
      templateName: template,
      certificateOwnershipToken: created.certificateOwnershipToken,
      parameters: { SerialNumber: serial },
    });
    out.thingName = registered.thingName;
    out.deviceConfiguration = registered.deviceConfiguration;
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
    if (e && e.modeledError) out.modeledError = e.modeledError;
  }
  identity.close();
  const stopped = new Promise((resolve) => client.on('stopped', resolve));
  client.stop();
  await stopped;
  client.close();
  console.log(JSON.stringify(out));
}

main().then(() => process.exit(0), (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
