// The stack a browser test plays against, started on free ports and stopped afterwards: our own redis-server
// (never a developer's), the Functions library and quizzes/ loaded by ringside-quiz, ringside-engine and
// ringside-edge (debug builds) serving web/. Logs go to the artifacts directory.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
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

export function build() {
  if (process.env.WEBTEST_NO_BUILD || process.env.WEBTEST_BIN_DIR) return;
  const r = spawnSync('cargo', ['build', '-q', '-p', 'ringside-edge', '-p', 'ringside-engine', '-p', 'ringside-lua', '--bins'],
    { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build failed');
}

export async function startStack(artifacts) {
  // WEBTEST_BIN_DIR: binaries built elsewhere (e.g. a clean worktree while this one is mid-edit).
  const bin = process.env.WEBTEST_BIN_DIR || path.join(ROOT, 'target', 'debug');
  const children = [];
  const log = (name) => fs.openSync(path.join(artifacts, `${name}.log`), 'w');
  const run = (name, cmd, args) => {
    const fd = log(name);
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
    children.push(child);
    return child;
  };
  const stop = async () => {
    for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGTERM');
    await sleep(300);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  };
  try {
    const redisPort = await freePort();
    const redisDir = fs.mkdtempSync(path.join(artifacts, 'redis-'));
    run('redis', process.env.REDIS_SERVER || 'redis-server',
      ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir]);
    await waitFor('redis-server', () => redisPing(redisPort));
    const redis = `redis://127.0.0.1:${redisPort}/`;

    const quizzes = fs.readdirSync(path.join(ROOT, 'quizzes')).filter((f) => f.endsWith('.json')).map((f) => `quizzes/${f}`);
    const imp = spawnSync(path.join(bin, 'ringside-quiz'), ['import', ...quizzes, '--redis', redis], { cwd: ROOT, encoding: 'utf8' });
    if (imp.status !== 0) throw new Error(`ringside-quiz import failed: ${imp.stderr}`);

    const enginePort = await freePort();
    run('engine', path.join(bin, 'ringside-engine'), ['--redis', redis, '--http', `127.0.0.1:${enginePort}`]);
    const edgePort = await freePort();
    const edgeArgs = ['--listen', `127.0.0.1:${edgePort}`, '--threads', '1', '--redis', redis, '--web-root', path.join(ROOT, 'web')];
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
    return { base, redis, stop, restartEdge };
  } catch (e) {
    await stop();
    throw e;
  }
}
