// The stack a browser test plays against, started on free ports and stopped afterwards: our own redis-server
// (never a developer's), the Functions library and quizzes/ loaded by ringside-quiz, ringside-engine and
// ringside-edge (debug builds) serving web/. Logs go to the artifacts directory.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import crypto from 'node:crypto';
import path from 'node:path';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, check, timeoutMs = 20000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try { if (await check()) return; } catch { /* not yet */ }
    if (Date.now() > until) throw new Error(`${what} did not come up within ${timeoutMs} ms (see the logs in the artifacts directory)`);
    await sleep(100);
  }
}

function redisPing(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('PING\r\n'));
    c.on('data', (d) => { c.destroy(); resolve(d.toString().startsWith('+PONG')); });
    c.on('error', () => resolve(false));
  });
}

// PostgreSQL's binaries (Debian keeps them off PATH), or null: then the stack runs without a control plane.
function pgBin() {
  const dirs = [process.env.PG_BIN, ...(fs.existsSync('/usr/lib/postgresql')
    ? fs.readdirSync('/usr/lib/postgresql').sort((a, b) => b - a).map((v) => `/usr/lib/postgresql/${v}/bin`) : [])];
  return dirs.find((d) => d && fs.existsSync(path.join(d, 'initdb')) && fs.existsSync(path.join(d, 'postgres'))) || null;
}
// The control plane (ringside-control + PostgreSQL) joins the stack when PostgreSQL is installed, unless
// WEBTEST_CONTROL=0; the edge then forwards /api/ to it and the host page signs in with a real API key.
export const withControl = () => process.env.WEBTEST_CONTROL !== '0' && pgBin() !== null;

export function build() {
  if (process.env.WEBTEST_NO_BUILD || process.env.WEBTEST_BIN_DIR) return;
  const pkgs = ['ringside-edge', 'ringside-engine', 'ringside-lua', ...(withControl() ? ['ringside-control'] : [])];
  const r = spawnSync('cargo', ['build', '-q', ...pkgs.flatMap((p) => ['-p', p]), '--bins'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build failed');
}

// initdb + postgres (as the postgres user when we are root: both refuse root) on a free port, the
// ringside database, then ringside-control: migrations, a host with an API key, quizzes/ as its public
// quizzes, the API server. Returns {url, apiKey}.
async function startControl(run, bin, redis, artifacts, serveArgs = []) {
  const pg = pgBin();
  const root = process.getuid && process.getuid() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringside-webtest-pg-'));
  // Run as the postgres user directly (not through runuser, which would stand between us and the signals).
  const as = root ? { uid: +spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout, gid: +spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout } : {};
  if (root) spawnSync('chown', ['-R', 'postgres:', dir]);
  const init = spawnSync(path.join(pg, 'initdb'), ['-D', path.join(dir, 'data'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C'],
    { encoding: 'utf8', cwd: dir, ...as });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const pgPort = await freePort();
  run('postgres', path.join(pg, 'postgres'), ['-D', path.join(dir, 'data'), '-p', String(pgPort), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { ...as, cwd: dir }).isPostgres = true;
  const psql = (sql) => spawnSync('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-d', 'postgres', '-c', sql], { encoding: 'utf8' });
  await waitFor('postgres', () => psql('SELECT 1').status === 0, 30000);
  if (psql('CREATE DATABASE ringside').status !== 0) throw new Error('CREATE DATABASE failed');
  const db = ['--database-url', `postgres://postgres@127.0.0.1:${pgPort}/ringside`, '--redis', redis];
  const control = path.join(bin, 'ringside-control');
  const ctl = (...args) => {
    const r = spawnSync(control, [...db, ...args], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ringside-control ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  ctl('migrate');
  const keyFile = path.join(artifacts, 'host.key');
  const hostId = /"hostId":(\d+)/.exec(ctl('host', 'create', '--name', 'Ms. Rivera', '--key-file', keyFile))[1];
  const quizzes = fs.readdirSync(path.join(ROOT, 'quizzes')).filter((f) => f.endsWith('.json')).map((f) => `quizzes/${f}`);
  ctl('quiz', 'import', '--host-id', hostId, '--visibility', 'public', ...quizzes);
  const port = await freePort();
  run('control', control, [...db, 'serve', '--listen', `127.0.0.1:${port}`, ...serveArgs]);
  await waitFor('ringside-control', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
  return { upstream: `127.0.0.1:${port}`, apiKey: fs.readFileSync(keyFile, 'utf8').trim(), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// opts.edgeMetrics: the edge also serves its process's /metrics on a port of its own (--metrics-listen), as
// deploy/'s scrape configs expect; its port is returned as edgeMetricsPort.
export async function startStack(artifacts, opts = {}) {
  // WEBTEST_BIN_DIR: binaries built elsewhere (e.g. a clean worktree while this one is mid-edit).
  const bin = process.env.WEBTEST_BIN_DIR || path.join(ROOT, 'target', 'debug');
  const children = [];
  const log = (name) => fs.openSync(path.join(artifacts, `${name}.log`), 'w');
  const run = (name, cmd, args, as = {}) => {
    const fd = log(name);
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', fd, fd], ...as });
    children.push(child);
    return child;
  };
  const cleanups = [];
  const stop = async () => {
    // SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for its clients); the others take either.
    const exits = children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)).filter(Boolean);
    for (const c of [...children].reverse()) if (c.exitCode === null) c.kill(c.isPostgres ? 'SIGINT' : 'SIGTERM');
    await Promise.race([Promise.all(exits), sleep(3000)]);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await sleep(100);
    for (const f of cleanups) f();
  };
  try {
    const redisPort = await freePort();
    const redisDir = fs.mkdtempSync(path.join(artifacts, 'redis-'));
    run('redis', process.env.REDIS_SERVER || 'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir]);
    await waitFor('redis-server', () => redisPing(redisPort));
    const redis = `redis://127.0.0.1:${redisPort}/`;

    // With a control plane the quizzes are its public quizzes; without, they go straight into Redis.
    const quizzes = fs.readdirSync(path.join(ROOT, 'quizzes')).filter((f) => f.endsWith('.json')).map((f) => `quizzes/${f}`);
    const imp = spawnSync(path.join(bin, 'ringside-quiz'), withControl() ? ['load', '--redis', redis] : ['import', ...quizzes, '--redis', redis],
      { cwd: ROOT, encoding: 'utf8' });
    if (imp.status !== 0) throw new Error(`ringside-quiz failed: ${imp.stderr}`);
    // The ports come first: the control plane's ops endpoint scrapes the edge's and the engine's /metrics.
    const enginePort = await freePort();
    const edgePort = await freePort();
    let control = null;
    const opsToken = crypto.randomBytes(16).toString('hex');
    if (withControl()) {
      const tokenFile = path.join(artifacts, 'ops.token');
      fs.writeFileSync(tokenFile, `${opsToken}\n`, { mode: 0o600 });
      control = await startControl(run, bin, redis, artifacts, ['--ops-token-file', tokenFile,
        '--ops-scrape', `edge=http://127.0.0.1:${edgePort}/metrics,engine=http://127.0.0.1:${enginePort}/metrics`]);
      cleanups.push(control.cleanup);
    }

    run('engine', path.join(bin, 'ringside-engine'), ['--redis', redis, '--http', `127.0.0.1:${enginePort}`]);
    const edgeMetricsPort = opts.edgeMetrics ? await freePort() : null;
    // --app-ping-interval 2s: the pages' pings at session:ack's pingInterval are checked at the end (run.mjs); with
    // the 20 s default only a socket that outlives 22 s would show one, which a quick run may not have.
    const edgeArgs = ['--listen', `127.0.0.1:${edgePort}`, '--threads', '1', '--redis', redis, '--web-root', path.join(ROOT, 'web'),
      '--app-ping-interval', '2s',
      ...(control ? ['--api-upstream', control.upstream] : []),
      ...(edgeMetricsPort ? ['--metrics-listen', `127.0.0.1:${edgeMetricsPort}`] : [])];
    let edge = run('edge', path.join(bin, 'ringside-edge'), edgeArgs);
    const base = `http://127.0.0.1:${edgePort}`;
    await waitFor('ringside-edge', async () => (await fetch(`${base}/readyz`)).ok);
    await waitFor('ringside-engine', async () => (await fetch(`http://127.0.0.1:${enginePort}/healthz`)).ok);
    let restarts = 0;
    // A network drop for every client at once: the edge dies (SIGKILL) and a new one takes the same port.
    const restartEdge = async (whileDown = async () => {}) => {
      const exited = new Promise((r) => edge.once('exit', r));
      edge.kill('SIGKILL');
      await exited;
      await whileDown();
      restarts += 1;
      edge = run(`edge-${restarts + 1}`, path.join(bin, 'ringside-edge'), edgeArgs);
      await waitFor('ringside-edge (restarted)', async () => (await fetch(`${base}/readyz`)).ok);
    };
    return { base, redis, stop, restartEdge, apiKey: control && control.apiKey, opsToken: control && opsToken, enginePort, edgeMetricsPort };
  } catch (e) {
    await stop();
    throw e;
  }
}
