// Runs Ctrl-Q's own `qseow session-get` command (its source, unmodified) against the simulator.
// Ctrl-Q is not on the npm registry (ctrl-q → 404) and its lockfile pulls xlsx from a CDN, so it
// cannot be installed here; this driver loads the command from a checkout of Ctrl-Q's source
// (CTRLQ_SRC=<checkout>/src, with the command's eight npm dependencies installed beside it) and
// registers it on a commander program the way src/ctrl-q.js does. Node names resolve through
// SIM_HOSTS ({"host": "127.0.0.x"}) by patching dns.lookup, so nothing asks real DNS.
// See docs/fidelity.md for how to run it.
//
// Usage: CTRLQ_SRC=… SIM_HOSTS='{…}' node ctrlq_session_get.mjs qseow session-get --host … [options]
import dns from 'node:dns';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const hosts = JSON.parse(process.env.SIM_HOSTS || '{}');
const systemLookup = dns.lookup;
dns.lookup = (host, options, callback) => {
  const cb = typeof options === 'function' ? options : callback;
  const opts = typeof options === 'object' && options !== null ? options : {};
  const address = hosts[String(host).toLowerCase()];
  if (!address) return systemLookup(host, options, callback);
  if (opts.all) return process.nextTick(cb, null, [{ address, family: 4 }]);
  return process.nextTick(cb, null, address, 4);
};

const src = process.env.CTRLQ_SRC;
const load = (rel) => import(pathToFileURL(path.join(src, rel)).href);
const { Command } = await import(pathToFileURL(path.join(src, '..', 'node_modules', 'commander', 'index.js')).href);
const { setupQseowGetProxySessionsCommand } = await load('lib/cli/qseow-get-proxy-session.js');

const program = new Command();
program.name('ctrl-q');
const qseow = new Command('qseow');
setupQseowGetProxySessionsCommand(qseow);
program.addCommand(qseow);
await program.parseAsync(process.argv);
