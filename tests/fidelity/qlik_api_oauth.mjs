// Authenticates with Qlik's own Cloud client, @qlik/api, as an OAuth machine-to-machine client
// (authType "oauth2": client id and secret, the client-credentials grant against /oauth/token),
// then reads the calling user and, over the engine websocket, opens a session app and reads the
// engine version and the app layout. Prints one JSON line on stdout. The tenant's CA is trusted
// through NODE_EXTRA_CA_CERTS (set by the caller).
//
// Usage: QLIK_CLIENT_ID=<id> QLIK_CLIENT_SECRET=<secret> node qlik_api_oauth.mjs <host:port>
import { auth, qix, users } from '@qlik/api';

const [host] = process.argv.slice(2);
const clientId = process.env.QLIK_CLIENT_ID;
const clientSecret = process.env.QLIK_CLIENT_SECRET;
if (!host || !clientId || !clientSecret) {
  console.error('usage: QLIK_CLIENT_ID=… QLIK_CLIENT_SECRET=… node qlik_api_oauth.mjs <host:port>');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error('@qlik/api did not finish within 20 s');
  process.exit(3);
}, 20000);

auth.setDefaultHostConfig({ authType: 'oauth2', host, clientId, clientSecret });
let session;
try {
  const { status, data } = await users.getMyUser();
  session = qix.openAppSession({ appId: `SessionApp_${Date.now()}` });
  const doc = await session.getDoc();
  const layout = await doc.getAppLayout();
  const engineVersion = await doc.global.engineVersion();
  const out = { status, data, engineVersion, layout: { qTitle: layout.qTitle, qIsSessionApp: layout.qIsSessionApp } };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (err) {
  const detail = err && err.status ? JSON.stringify({ status: err.status, data: err.data }) : '';
  console.error(`@qlik/api failed: ${detail} ${err && err.stack ? err.stack : err}`);
  process.exitCode = 1;
} finally {
  if (session) await session.close().catch(() => {});
  clearTimeout(watchdog);
}
