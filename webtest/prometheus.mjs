// The dashboard against a real Prometheus: a local stack (webtest/stack.mjs: redis-server, ringside-engine,
// ringside-edge with its per-process --metrics-listen port, no control plane), one short game played through it
// by ringside-loadgen, and Debian's `prometheus` binary on a free port with a temporary config generated from
// deploy/dashboards/prometheus-static.yml (its jobs and labels kept, the targets pointed at the stack, a 1 s
// scrape interval). Then every metric name of deploy/dashboards/grafana-ringside.json must return data, and every
// query of the dashboard ($edge_job, $engine_job and $__rate_interval filled in) must evaluate; those without a
// comparison (`> 0`, `== 1`) must return data too. A system Prometheus service the package may have installed is
// neither used nor touched. Run by scripts/test.sh after the browser suite (about 15 s); PROMETHEUS=path picks
// another binary.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT, build, startStack } from './stack.mjs';

process.env.WEBTEST_CONTROL = '0'; // the dashboard reads the edge and the engine only
const ARTIFACTS = path.join(ROOT, 'webtest', 'artifacts', 'prometheus');
const PROMETHEUS = process.env.PROMETHEUS || 'prometheus';
const t0 = Date.now();
const say = (s) => console.log(`[prometheus ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const failures = [];
const check = (ok, what) => { if (!ok) { failures.push(what); say(`FAIL ${what}`); } };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// The scrape config of deploy/ with the stack's targets: YAML read by python3 (PyYAML, which setup.sh installs
// for check-deploy.sh), written as JSON (which is YAML).
function scrapeConfig(targets) {
  const r = spawnSync('python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))',
    path.join(ROOT, 'deploy', 'dashboards', 'prometheus-static.yml')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reading prometheus-static.yml: ${r.stderr}`);
  const cfg = JSON.parse(r.stdout);
  cfg.global = { ...cfg.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
  for (const job of cfg.scrape_configs) {
    if (!targets[job.job_name]) throw new Error(`deploy's scrape config has a job the test does not know: ${job.job_name}`);
    job.static_configs = job.static_configs.map((c) => ({ ...c, targets: [targets[job.job_name]] }));
  }
  return cfg;
}

// The dashboard's queries with its variables filled in, and the metric names they use.
function dashboardQueries() {
  const dash = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'dashboards', 'grafana-ringside.json'), 'utf8'));
  const exprs = dash.panels.flatMap((p) => (p.targets || []).map((t) => ({ panel: p.title, expr: t.expr })));
  const fill = (e) => e.replaceAll('$edge_job', 'ringside-edge').replaceAll('$engine_job', 'ringside-engine')
    .replaceAll('$__rate_interval', '15s');
  const names = new Set();
  for (const { expr } of exprs) for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)) names.add(m[1]);
  return { exprs: exprs.map((x) => ({ ...x, query: fill(x.expr) })), names: [...names].sort() };
}

async function query(base, q) {
  const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await r.json();
  if (body.status !== 'success') throw new Error(`${q}: ${body.errorType}: ${body.error}`);
  return body.data.result;
}

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });
const version = spawnSync(PROMETHEUS, ['--version'], { encoding: 'utf8' });
if (version.status !== 0) {
  console.error(`${PROMETHEUS} is missing: scripts/setup.sh installs Debian's prometheus (or set PROMETHEUS=/path/to/prometheus)`);
  process.exit(1);
}
say(version.stdout.split('\n')[0]);

build();
if (!process.env.WEBTEST_NO_BUILD && !process.env.WEBTEST_BIN_DIR) {
  const r = spawnSync('cargo', ['build', '-q', '-p', 'ringside-loadgen', '--bins'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build -p ringside-loadgen failed');
}
const bin = process.env.WEBTEST_BIN_DIR || path.join(ROOT, 'target', 'debug');
const stack = await startStack(ARTIFACTS, { edgeMetrics: true });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringside-prometheus-'));
let prom = null;
let exitCode = 1;
try {
  const cfg = scrapeConfig({
    'ringside-edge': `127.0.0.1:${stack.edgeMetricsPort}`,
    'ringside-engine': `127.0.0.1:${stack.enginePort}`,
  });
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify(cfg, null, 1));
  fs.copyFileSync(path.join(dir, 'prometheus.yml'), path.join(ARTIFACTS, 'prometheus.yml'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(ARTIFACTS, 'prometheus.log'), 'w');
  prom = spawn(PROMETHEUS, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', log, log] });
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/-/ready`)).ok) break; } catch { /* not yet */ }
    if (i > 200 || prom.exitCode !== null) throw new Error(`prometheus did not start (see ${ARTIFACTS}/prometheus.log)`);
    await sleep(100);
  }
  say(`prometheus on ${base}, scraping edge :${stack.edgeMetricsPort} and engine :${stack.enginePort}`);

  // One short game: answers, rooms and fires for the game series.
  const game = spawnSync(path.join(bin, 'ringside-loadgen'), ['game', '--url', `${stack.base.replace('http', 'ws')}/ws`,
    '--rooms', '1', '--players-per-room', '5', '--questions', '1', '--time-per-q-ms', '2000', '--countdown-ms', '300',
    '--reveal-pause-ms', '300', '--duration', '30', '--quiet'], { cwd: ROOT, encoding: 'utf8' });
  fs.writeFileSync(path.join(ARTIFACTS, 'loadgen.log'), `${game.stdout}\n${game.stderr}`);
  check(game.status === 0, `ringside-loadgen played a game (exit ${game.status}; see ${ARTIFACTS}/loadgen.log)`);

  // Both jobs up, with enough samples for rate() over the dashboard's window.
  for (let i = 0; ; i++) {
    const up = await query(base, 'count_over_time(up[1m]) >= 4 and up == 1');
    const jobs = new Set(up.map((r) => r.metric.job));
    if (jobs.has('ringside-edge') && jobs.has('ringside-engine')) break;
    if (i > 100) throw new Error(`the targets are not up: ${JSON.stringify(await query(base, 'up'))}`);
    await sleep(200);
  }

  const { exprs, names } = dashboardQueries();
  for (const name of names) {
    const rows = name === 'up' ? await query(base, 'up') : await query(base, `${name}{job=~"ringside-edge|ringside-engine"}`);
    check(rows.length > 0, `${name} (used by the dashboard) returns data`);
  }
  let withData = 0;
  for (const { panel, expr, query: q } of exprs) {
    let rows;
    try {
      rows = await query(base, q);
    } catch (e) {
      check(false, `the query of "${panel}" evaluates: ${e.message}`);
      continue;
    }
    const filtered = /(==|!=|>|<)\s*[0-9]/.test(expr); // `> 0`, `== 1`: empty is a valid answer
    if (!filtered) check(rows.length > 0, `the query of "${panel}" returns data: ${expr}`);
    if (rows.length) withData += 1;
  }
  const answers = await query(base, 'sum(ringside_edge_answers_total{job="ringside-edge"})');
  check(answers.length && Number(answers[0].value[1]) >= 5, `the game's answers are counted (${answers.length ? answers[0].value[1] : 'none'})`);
  say(`${names.length} metric names and ${exprs.length} queries of the dashboard checked (${withData} with data)`);
  exitCode = failures.length ? 1 : 0;
} catch (e) {
  failures.push(String(e.stack || e));
  console.error(e);
} finally {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom.once('exit', r));
    prom.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (prom.exitCode === null) prom.kill('SIGKILL');
  }
  await stack.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
say(failures.length ? `FAILED: ${failures.length} check(s)` : 'every metric and query of the dashboard returns data');
for (const f of failures) console.log(`  - ${f}`);
process.exit(exitCode);
