// Reads the calling user with Qlik's own Cloud client, @qlik/api, authenticated by an API key,
// and prints {"status": <http status>, "data": <user>} as one JSON line on stdout. The tenant's
// CA is trusted through NODE_EXTRA_CA_CERTS (set by the caller), as for any Node client.
//
// Usage: QLIK_API_KEY=<key> node qlik_api_users_me.mjs <host:port>
import { auth, users } from '@qlik/api';

const [host] = process.argv.slice(2);
const apiKey = process.env.QLIK_API_KEY;
if (!host || !apiKey) {
  console.error('usage: QLIK_API_KEY=<key> node qlik_api_users_me.mjs <host:port>');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error('@qlik/api did not finish within 20 s');
  process.exit(3);
}, 20000);

auth.setDefaultHostConfig({ authType: 'apikey', host, apiKey });
try {
  const { status, data } = await users.getMyUser();
  process.stdout.write(`${JSON.stringify({ status, data })}\n`);
} catch (err) {
  const detail = err && err.status ? JSON.stringify({ status: err.status, data: err.data }) : '';
  console.error(`@qlik/api failed: ${detail} ${err && err.stack ? err.stack : err}`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
}
