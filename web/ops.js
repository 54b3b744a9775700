// The ops page, refreshed once a second from two read-only sources:
// - the control plane's GET /api/ops (forwarded by the edge under /api/; control/src/ops.rs): the live rooms
//   (paged, newest first, from each partition's index in Redis), Redis's health, and the series of every edge
//   process and engine it scrapes. It needs the ops token (a room's PIN lets anyone join), kept in this tab's
//   sessionStorage only;
// - this edge's own /metrics (Prometheus text), always: sockets, frames, closes by code, every series.
// Totals prefer /api/ops (every process) and fall back to this edge alone. Rates (answers/s, refusals/s) and
// the timer lag p99 are computed between two refreshes.
import { $, esc, fmt } from './game.js';
import { CLOSE_CODES } from './close-codes.js';

const HISTORY = 60;
const PAGE = 25;
const TOKEN_KEY = 'ringside.opsToken';
// [series (without the ringside_edge_ prefix), label, 'gauge' | 'rate']
const EDGE = [
  ['connections_open', 'Sockets open', 'gauge'],
  ['connections_accepted_total', 'New connections / s', 'rate'],
  ['frames_in_total', 'Frames in / s', 'rate'],
  ['frames_out_total', 'Frames out / s', 'rate'],
  ['bytes_out_total', 'Bytes out / s', 'rate'],
  ['sendq_bytes', 'Send-queue bytes', 'gauge'],
  ['slow_consumer_closes_total', 'Slow-consumer closes / s', 'rate'],
  ['dropped_superseded_frames_total', 'Superseded frames dropped / s', 'rate'],
  ['handshakes_failed_total', 'Failed handshakes / s', 'rate'],
];

let token = (() => { try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } })();
let apiMode = 'try'; // 'try' | 'ok' | 'token' (waiting for a token) | 'off' (no endpoint; retried now and then)
let apiRetryAt = 0;
let offset = 0;
let lastLive = 0;

// name{labels} value → [{name, labels, value}]
function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[3] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
const sum = (series, name) => {
  const hits = series.filter((s) => s.name === name && !s.labels.le);
  return hits.length ? hits.reduce((a, s) => a + s.value, 0) : null;
};

// Per-second rate of a counter between two refreshes (0 the first time, or after a restart).
const seen = new Map();
function perSec(key, v, now) {
  const p = seen.get(key);
  seen.set(key, { v, now });
  return p && now > p.now && v >= p.v ? (v - p.v) / ((now - p.now) / 1000) : 0;
}

// The 99th percentile of the observations between two refreshes of a cumulative histogram {le: count}.
const hists = new Map();
function p99(key, buckets) {
  const before = hists.get(key);
  hists.set(key, buckets);
  if (!before || !buckets) return null;
  const les = Object.keys(buckets).filter((le) => le !== '+Inf').sort((a, b) => Number(a) - Number(b));
  const delta = (le) => (buckets[le] || 0) - (before[le] || 0);
  const total = delta('+Inf');
  if (total <= 0) return null;
  const le = les.find((x) => delta(x) >= 0.99 * total);
  return le === undefined ? Infinity : Number(le);
}

const hist = new Map();
function spark(key, v) {
  const h = hist.get(key) || [];
  h.push(v);
  if (h.length > HISTORY) h.shift();
  hist.set(key, h);
  const max = Math.max(1, ...h);
  const pts = h.map((y, i) => `${(i * 100) / (HISTORY - 1)},${30 - (28 * y) / max}`).join(' ');
  return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true"><polyline points="${pts}"/></svg>`;
}
const num = (v) => (v < 10 && !Number.isInteger(v) ? v.toFixed(1) : fmt(Math.round(v)));
const card = (key, label, v, shown = num(v)) => `<div class="op"><p class="op-label">${esc(label)}</p><p class="op-value">${shown}</p>${spark(key, v)}</div>`;
const bytes = (b) => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${fmt(b)} B`);
const ms = (s) => (s === null ? '—' : s === Infinity ? '> 10 s' : s < 1 ? `≤ ${Math.round(s * 1000)} ms` : `≤ ${s} s`);
const ago = (t, now) => {
  const s = Math.max(0, Math.round((now - t) / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
};
const yes = (b) => (b ? 'yes' : '<strong>no</strong>');

async function fetchApi() {
  if (apiMode === 'token' || (apiMode === 'off' && Date.now() < apiRetryAt)) return null;
  let r;
  try {
    r = await fetch(`/api/ops?offset=${offset}&limit=${PAGE}`, { cache: 'no-store', headers: token ? { Authorization: `Bearer ${token}` } : {} });
  } catch {
    return null;
  }
  const json = (r.headers.get('content-type') || '').includes('application/json');
  if (r.ok && json) { apiMode = 'ok'; return r.json(); }
  if (r.status === 401 && json) {
    apiMode = 'token';
    $('token-form').hidden = false;
    $('token-help').textContent = token ? 'That token was not accepted.' : 'Rooms, Redis and the other processes need the ops token (ringside-control --ops-token-file).';
    if (token) { token = ''; try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ } }
    return null;
  }
  apiMode = 'off';
  apiRetryAt = Date.now() + 10000;
  $('token-form').hidden = true;
  $('ops-error').textContent = json ? 'The control plane\'s ops endpoint is off (start ringside-control with --ops-token-file): only this edge is shown.'
    : 'No control plane answers under /api/: only this edge is shown.';
  return null;
}

async function fetchEdge() {
  const r = await fetch('/metrics', { cache: 'no-store' });
  if (!r.ok) throw new Error(`/metrics answered ${r.status}`);
  return parse(await r.text());
}

function renderRooms(rooms, now) {
  lastLive = rooms.live;
  $('rooms-box').hidden = false;
  const first = rooms.list.length ? rooms.offset + 1 : 0;
  $('rooms-range').textContent = `${fmt(first)}–${fmt(rooms.offset + rooms.list.length)} of ${fmt(rooms.live)}, newest first`;
  $('rooms').innerHTML = rooms.list.map((r) => {
    const q = r.qIndex === null || r.qIndex === undefined ? '—' : `${r.qIndex + 1} of ${r.totalQuestions}${r.question ? ` · ${esc(r.question.length > 60 ? `${r.question.slice(0, 57)}…` : r.question)}` : ''}`;
    return `<tr><td><code>${esc(r.code)}</code></td><td>${esc(r.state)}${r.paused ? ' (paused)' : ''}</td><td>${fmt(r.players)}</td><td>${q}</td><td>${ago(r.created, now)}</td></tr>`;
  }).join('') || '<tr><td colspan="5">No live rooms.</td></tr>';
  $('prev').disabled = offset === 0;
  $('next').disabled = offset + PAGE >= rooms.live;
}

async function refresh() {
  const now = Date.now();
  let edge = null;
  let api = null;
  try {
    [edge, api] = await Promise.all([fetchEdge(), fetchApi()]);
    if (apiMode !== 'off') $('ops-error').textContent = '';
  } catch (e) {
    $('ops-error').textContent = `Cannot read /metrics: ${e.message}. Retrying…`;
    return;
  }
  const proc = edge.find((s) => s.labels.process !== undefined);
  $('age').textContent = `updated ${new Date(now).toLocaleTimeString()}${proc ? ` · this edge: process ${proc.labels.process}` : ''}`;

  // Totals: every scraped process when /api/ops answers, else this edge alone.
  const services = api ? api.services : [];
  const edges = services.filter((s) => s.job === 'edge');
  const engines = services.filter((s) => s.job === 'engine');
  const E = (name) => sum(edge, `ringside_edge_${name}`) || 0;
  const total = (name) => (edges.length ? edges.reduce((a, s) => a + ((s.series && s.series[`ringside_edge_${name}`]) || 0), 0) : E(name));
  const refusals = {};
  if (edges.length) {
    for (const s of edges) for (const [code, v] of Object.entries((s.series && s.series.ringside_edge_refusals_total) || {})) refusals[code] = (refusals[code] || 0) + v;
  } else {
    for (const s of edge.filter((x) => x.name === 'ringside_edge_refusals_total')) refusals[s.labels.code] = (refusals[s.labels.code] || 0) + s.value;
  }
  const refusedAll = Object.values(refusals).reduce((a, v) => a + v, 0);
  const drift = {};
  for (const s of engines) for (const [le, v] of Object.entries((s.series && s.series.timer_fire_drift_seconds_bucket) || {})) drift[le] = (drift[le] || 0) + v;
  const lag = engines.length ? p99('drift', drift) : null;
  const redisNodes = api ? api.redis.nodes : [];

  const tiles = [
    card('rooms', api ? 'Live rooms' : 'Rooms on this edge', api ? api.rooms.live : E('rooms')),
    card('players', 'Players online', total('players')),
    card('answers', 'Answers / s', perSec('answers', total('answers_total'), now)),
    card('refusals', 'Refusals / s', perSec('refusals', refusedAll, now)),
    card('sockets', 'Sockets open', total('connections_open')),
    card('sendq', 'Send-queue bytes', total('sendq_bytes'), bytes(total('sendq_bytes'))),
    card('slow', 'Slow-consumer closes / s', perSec('slow', total('slow_consumer_closes_total'), now)),
  ];
  if (engines.length) {
    const owned = engines.reduce((a, s) => a + ((s.series && s.series.partitions_owned) || 0), 0);
    tiles.push(card('lag', 'Timer lag p99', lag === null || lag === Infinity ? 0 : lag * 1000, ms(lag)));
    tiles.push(card('owned', 'Partitions owned', owned));
  }
  if (redisNodes.length) {
    const up = redisNodes.filter((n) => n.up).length;
    tiles.push(card('redis', 'Redis nodes up', up, `${up} of ${redisNodes.length}`));
  }
  $('game').innerHTML = tiles.join('');

  if (api) renderRooms(api.rooms, now);
  $('edges-box').hidden = !edges.length;
  $('edges').innerHTML = edges.map((s) => {
    const x = s.series || {};
    const ans = perSec(`answers-${s.url}`, x.ringside_edge_answers_total || 0, now);
    return `<tr><td>${esc(new URL(s.url).host)}</td><td>${yes(s.up)}</td><td>${fmt(x.ringside_edge_connections_open)}</td><td>${fmt(x.ringside_edge_players)}</td>`
      + `<td>${bytes(x.ringside_edge_sendq_bytes || 0)}</td><td>${fmt(x.ringside_edge_slow_consumer_closes_total)}</td><td>${num(ans)}</td></tr>`;
  }).join('');
  $('engines-box').hidden = !engines.length;
  $('engines').innerHTML = engines.map((s) => {
    const x = s.series || {};
    return `<tr><td>${esc(new URL(s.url).host)}</td><td>${yes(s.up)}</td><td>${s.up ? yes(x.engine_ready === 1) : '—'}</td><td>${fmt(x.partitions_owned)}</td>`
      + `<td>${fmt(x.timers_pending)}</td><td>${ms(p99(`drift-${s.url}`, x.timer_fire_drift_seconds_bucket))}</td></tr>`;
  }).join('');
  $('redis-box').hidden = !redisNodes.length;
  $('redis').innerHTML = redisNodes.map((n) => `<tr><td>${esc(n.addr)}</td><td>${yes(n.up)}${n.error ? ` (${esc(n.error)})` : ''}</td><td>${esc(n.role || '—')}</td>`
    + `<td>${n.up ? `${(n.pingUs / 1000).toFixed(2)} ms` : '—'}</td><td>${n.up ? bytes(n.usedMemory || 0) : '—'}</td><td>${n.up ? fmt(n.clients) : '—'}</td><td>${n.up ? fmt(n.opsPerSec) : '—'}</td></tr>`).join('');

  $('refusals').innerHTML = Object.entries(refusals).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
    .map(([code, v]) => `<tr><td><code>${esc(code)}</code></td><td>${fmt(v)}</td><td>${num(perSec(`refusal-${code}`, v, now))}</td></tr>`).join('')
    || '<tr><td colspan="3">None yet.</td></tr>';

  $('edge').innerHTML = EDGE.map(([n, label, kind]) => {
    const v = sum(edge, `ringside_edge_${n}`);
    if (v === null) return '';
    return kind === 'rate' ? card(`edge-${n}`, label, perSec(`edge-${n}`, v, now)) : card(`edge-${n}`, label, v, n === 'sendq_bytes' ? bytes(v) : num(v));
  }).join('');
  $('closes').innerHTML = edge.filter((s) => s.name === 'ringside_edge_protocol_closes_total').map((s) => {
    const c = CLOSE_CODES[s.labels.code];
    return `<tr><td>${esc(s.labels.code)}</td><td>${c ? esc(c.name) : ''}</td><td>${fmt(s.value)}</td><td>${num(perSec(`close-${s.labels.code}`, s.value, now))}</td></tr>`;
  }).join('');
  if ($('all').closest('details').open) {
    $('all').innerHTML = edge.map((s) => {
      const l = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(',');
      return `<tr><td><code>${esc(s.name)}${l ? `{${esc(l)}}` : ''}</code></td><td>${fmt(s.value)}</td></tr>`;
    }).join('');
  }
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* private mode */ }
  $('token').value = '';
  $('token-form').hidden = true;
  apiMode = 'try';
  refresh();
});
$('prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE); refresh(); });
$('next').addEventListener('click', () => { if (offset + PAGE < lastLive) offset += PAGE; refresh(); });

refresh();
setInterval(refresh, 1000);
