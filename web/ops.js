// The ops page: this edge's /metrics (Prometheus text) read once a second, shown as current values and
// per-second rates with a one-minute sparkline. Series it does not know are listed as they are; game series
// (rooms, players, answers) appear as soon as the edge exports them under the names in GAME below.
import { $, esc, fmt } from './game.js';
import { CLOSE_CODES } from './close-codes.js';

const HISTORY = 60;
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
const GAME = [
  ['rooms', 'Live rooms', 'gauge'],
  ['players', 'Players online', 'gauge'],
  ['answers_total', 'Answers / s', 'rate'],
  ['refusals_total', 'Refusals / s', 'rate'],
];

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

let prev = null, prevAt = 0;
const hist = new Map(); // key → recent values for the sparkline

function spark(key, v) {
  const h = hist.get(key) || [];
  h.push(v);
  if (h.length > HISTORY) h.shift();
  hist.set(key, h);
  const max = Math.max(1, ...h);
  const pts = h.map((y, i) => `${(i * 100) / (HISTORY - 1)},${30 - (28 * y) / max}`).join(' ');
  return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-hidden="true"><polyline points="${pts}"/></svg>`;
}

function cards(el, table, series, dt, prefix) {
  let shown = 0;
  el.innerHTML = table.map(([n, label, kind]) => {
    const name = `${prefix}${n}`;
    const now = sum(series, name);
    if (now === null) return '';
    shown += 1;
    let v = now;
    if (kind === 'rate') {
      const before = prev ? sum(prev, name) : null;
      v = before === null || dt <= 0 ? 0 : Math.max(0, (now - before) / dt);
    }
    const shownV = kind === 'rate' ? (v < 10 ? v.toFixed(1) : fmt(Math.round(v))) : fmt(v);
    return `<div class="op"><p class="op-label">${esc(label)}</p><p class="op-value">${shownV}</p>${spark(name, v)}</div>`;
  }).join('');
  return shown;
}

async function refresh() {
  let text;
  try {
    const r = await fetch('/metrics', { cache: 'no-store' });
    if (!r.ok) throw new Error(`/metrics answered ${r.status}`);
    text = await r.text();
    $('ops-error').textContent = '';
  } catch (e) {
    $('ops-error').textContent = `Cannot read /metrics: ${e.message}. Retrying…`;
    return;
  }
  const series = parse(text);
  const at = performance.now();
  const dt = prev ? (at - prevAt) / 1000 : 0;
  const proc = series.find((s) => s.labels.process !== undefined);
  $('age').textContent = `updated ${new Date().toLocaleTimeString()}${proc ? ` · process ${proc.labels.process}` : ''}`;

  cards($('edge'), EDGE, series, dt, 'ringside_edge_');
  const gameShown = cards($('game'), GAME, series, dt, 'ringside_edge_') + 0;
  $('game-missing').hidden = gameShown > 0;

  const closes = series.filter((s) => s.name === 'ringside_edge_protocol_closes_total');
  $('closes').innerHTML = closes.map((s) => {
    const before = prev && prev.find((p) => p.name === s.name && p.labels.code === s.labels.code);
    const rate = before && dt > 0 ? Math.max(0, (s.value - before.value) / dt) : 0;
    const c = CLOSE_CODES[s.labels.code];
    return `<tr><td>${esc(s.labels.code)}</td><td>${c ? esc(c.name) : ''}</td><td>${fmt(s.value)}</td><td>${rate.toFixed(1)}</td></tr>`;
  }).join('');
  if ($('all').closest('details').open) {
    $('all').innerHTML = series.map((s) => {
      const l = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(',');
      return `<tr><td><code>${esc(s.name)}${l ? `{${esc(l)}}` : ''}</code></td><td>${fmt(s.value)}</td></tr>`;
    }).join('');
  }
  prev = series;
  prevAt = at;
}

refresh();
setInterval(refresh, 1000);
