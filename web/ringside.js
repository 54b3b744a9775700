// Ringside browser client: one WebSocket (subprotocol ringside.v1.json), request ids, clock sync,
// per-room seq tracking and reconnect with the last seq. Shared by host.html and play.html.
import { reconnectAdvice } from './close-codes.js';

// docs/protocol.md session:ack / ping: ping every pingInterval ms (the server's value; this if absent), after
// SYNC_PINGS quick pings SYNC_PING_EVERY_MS apart. The clock offset is taken from the pong with the smallest
// error bound: half its round trip plus its age times DRIFT (a clock drifting 100 ppm against the server's),
// so a stale sample stops winning over a fresh one whose round trip was a little longer (perf/edge.md, Pings).
const PING_INTERVAL_DEFAULT_MS = 20000;
const PING_INTERVAL_MIN_MS = 1000;
const SYNC_PINGS = 4;
const SYNC_PING_EVERY_MS = 500;
const DRIFT = 100e-6;
export class Ringside {
  constructor(onEvent, onStatus) {
    this.onEvent = onEvent;
    this.onStatus = onStatus || (() => {});
    this.rid = 0;
    this.pending = new Map();
    this.offset = 0;        // server clock − local clock, ms
    this.pingInterval = PING_INTERVAL_DEFAULT_MS; // session:ack's pingInterval
    this.lastSeq = 0;
    this.session = null;    // {gameCode, playerId, sessionToken} for reconnect
    this.backoff = 500;
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = this.params();
    return `${proto}//${location.host}/ws` + (q.length ? `?${q.join('&')}` : '');
  }

  // The upgrade's query: resume=1 when this socket replaces a lost one (the edge admits it before new players).
  params() {
    return this.resuming ? ['resume=1'] : [];
  }

  connect() {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.url(), 'ringside.v1.json');
      this.ws = ws;
      ws.onmessage = (m) => this.handle(JSON.parse(m.data), resolve);
      ws.onclose = (e) => {
        this.onStatus(`disconnected (${e.code})`);
        // docs/protocol.md §4: the protocol's close-code table says whether and when to come back.
        const advice = reconnectAdvice(e.code);
        if (advice !== 'never' && this.session) setTimeout(() => this.reconnect(), this.reconnectDelay(advice));
        this.backoff = Math.min(this.backoff * 2, 8000);
      };
    });
  }

  // How long to wait before reconnecting after a close with this advice (game.js paces it by the server's policy).
  reconnectDelay(advice) {
    return advice === 'now' ? 0 : this.backoff;
  }

  async reconnect() {
    await this.resumingConnect();
    const s = this.session;
    this.request('reconnect:attempt', { gameCode: s.gameCode, playerId: s.playerId, sessionToken: s.sessionToken, lastSeq: this.lastSeq })
      .catch((e) => this.onStatus(`reconnect failed: ${e.code}`));
  }

  // connect() for a socket that replaces a lost one: its URL says resume=1 (read while the socket is made).
  resumingConnect() {
    this.resuming = true;
    try { return this.connect(); } finally { this.resuming = false; }
  }

  handle(env, resolveConnect) {
    if (env.event === 'session:ack') {
      this.offset = env.data.serverTime - Date.now();
      this.clock = [];
      const every = Number(env.data.pingInterval);
      this.pingInterval = every > 0 ? Math.max(every, PING_INTERVAL_MIN_MS) : PING_INTERVAL_DEFAULT_MS;
      this.syncPings = SYNC_PINGS; // the first pings come every 0.5 s: the offset is settled before a question shows
      this.backoff = 500;
      this.onStatus('connected');
      this.ping();
      resolveConnect();
      return;
    }
    if (env.event === 'pong') {
      // The offset of the sample with the smallest error bound among the last 8: a delayed pong skews the midpoint
      // by up to half its round trip, an old one by the clocks' drift since, and questions are drawn at showAt by
      // this clock (docs/protocol.md §7.3).
      const t3 = Date.now();
      this.clock = [...(this.clock || []), { at: t3, rtt: t3 - env.data.t, offset: env.data.serverTime - (env.data.t + t3) / 2 }].slice(-8);
      this.offset = Ringside.bestClockSample(this.clock, t3).offset;
    }
    if (env.seq !== undefined) {
      if (env.seq <= this.lastSeq) return; // already seen (replay after reconnect)
      this.lastSeq = env.seq;
    }
    if (env.rid !== undefined && this.pending.has(env.rid)) {
      const { resolve, reject } = this.pending.get(env.rid);
      this.pending.delete(env.rid);
      if (env.event === 'error') reject(env.data); else resolve(env.data);
      if (env.event === 'room:join:ack' || env.event === 'reconnect:state') this.lastSeq = Math.max(this.lastSeq, env.data.seq);
    }
    this.onEvent(env);
  }

  send(event, data, rid) {
    const env = { event, data };
    if (rid !== undefined) env.rid = rid;
    this.ws.send(JSON.stringify(env));
  }

  request(event, data) {
    const rid = ++this.rid;
    return new Promise((resolve, reject) => {
      this.pending.set(rid, { resolve, reject });
      this.send(event, data, rid);
    });
  }

  ping() {
    this.send('ping', { t: Date.now() });
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => this.ping(), this.syncPings-- > 0 ? SYNC_PING_EVERY_MS : this.pingInterval);
  }

  // The clock sample ({at, rtt, offset}) whose offset is the most trustworthy at local time `now`.
  static bestClockSample(samples, now) {
    const bound = (s) => s.rtt / 2 + (now - s.at) * DRIFT;
    return samples.reduce((a, b) => (bound(b) < bound(a) ? b : a));
  }

  serverNow() { return Date.now() + this.offset; }
  msUntil(serverMs) { return Math.max(0, serverMs - this.serverNow()); }

  // HMAC-SHA256(answerSecret, "gameCode:playerId:qIndex:answerIdx"), lowercase hex (docs/protocol.md §6).
  static async answerHash(secret, gameCode, playerId, qIndex, answerIdx) {
    const enc = new TextEncoder();
    const key = await crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const sig = await crypto.subtle.sign('HMAC', key, enc.encode(`${gameCode}:${playerId}:${qIndex}:${answerIdx}`));
    return [...new Uint8Array(sig)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
}
