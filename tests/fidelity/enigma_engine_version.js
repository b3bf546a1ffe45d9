// Opens a QIX engine session with enigma.js the way Ctrl-Q and Butler SOS do (client
// certificate + X-Qlik-User on the websocket upgrade), calls Global.EngineVersion and prints
// {"engineVersion": <qVersion>, "traffic": [...]} as one JSON line on stdout.
//
// Usage: node enigma_engine_version.js <engine-port> <certs-dir> [host]
'use strict';

const fs = require('fs');
const path = require('path');
const enigma = require('enigma.js');
const WebSocket = require('ws');
const schema = require('enigma.js/schemas/12.1823.0.json');

const [port, certsDir, host = 'localhost'] = process.argv.slice(2);
if (!port || !certsDir) {
  console.error('usage: node enigma_engine_version.js <engine-port> <certs-dir> [host]');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error('enigma.js did not finish within 20 s');
  process.exit(3);
}, 20000);

const read = (name) => fs.readFileSync(path.join(certsDir, name));
const traffic = [];
const session = enigma.create({
  schema,
  url: `wss://${host}:${port}/app/engineData`,
  createSocket: (url) =>
    new WebSocket(url, {
      ca: [read('root.pem')],
      cert: read('client.pem'),
      key: read('client_key.pem'),
      headers: { 'X-Qlik-User': 'UserDirectory=INTERNAL; UserId=sa_api' },
    }),
});
session.on('traffic:received', (data) => traffic.push(data));

(async () => {
  let code = 0;
  try {
    const global = await session.open();
    const engineVersion = await global.engineVersion();
    process.stdout.write(`${JSON.stringify({ engineVersion, traffic })}\n`);
  } catch (err) {
    console.error(`enigma.js failed: ${err && err.stack ? err.stack : err}`);
    code = 1;
  } finally {
    await session.close().catch(() => {});
    clearTimeout(watchdog);
  }
  process.exitCode = code;
})();
