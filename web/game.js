// What play.html and host.html share on top of ringside.js: a client that resumes its session (reconnect:attempt
// with the last seq, retried while the server says retry), paces its reconnects by the server's policy, resends an
// answer whose reply the dropped socket lost, and times requests out, the browser-storage session,
// the answer HMAC where WebCrypto is missing (plain http on a LAN address is not a secure context), option
// colours and shapes, and small DOM helpers. Fair start (docs/protocol.md §7.3): where WebCrypto exists (secure
// contexts), the socket asks for sealed questions (/ws?sealed=1) and opens each with its game:question:key; the
// pages then show it at its showAt.
import { Ringside } from './ringside.js';
import { reconnectAdvice, CLOSE_CODES } from './close-codes.js';

const RETRYABLE = new Set(['rate_limited', 'overloaded', 'unavailable', 'internal', 'timeout', 'offline']);
// Refusals of a new session that ask to come back after retryAfterMs (docs/admission.md); nothing was tried.
const RETRY_LATER = new Set(['overloaded', 'unavailable']);
const SESSION_EVENTS = new Set(['room:join', 'room:create']);
// docs/protocol.md §4 "Pacing": without a policy in session:ack (an older edge), 0.5 s doubling, no jitter.
const DEFAULT_POLICY = { delayMs: 500, jitterMs: 0 };
const MAX_BACKOFF_MS = 8000;
// How long an answer whose reply was lost with its socket is resent for (past it the question is long over).
const ANSWER_RESEND_MS = 30000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class GameClient extends Ringside {
  // hooks: onEvent(env), onLine(online: bool, closeCode, final: bool), onResumed(reply), onResumeFailed(error)
  constructor(hooks) {
    super((env) => hooks.onEvent(env), (s) => this.status(s));
    this.hooks = hooks;
    this.online = false;
    this.ready = false; // connected, and the session (if any) taken on this socket
    this.waiters = [];
    this.policy = DEFAULT_POLICY; // session:ack's reconnect policy
    this.attempts = 0;            // reconnect attempts since the last session:ack
  }

  // Sealed questions where AES-GCM is at hand; elsewhere the edge sends each question in clear at its key time.
  params() {
    return canOpenSealed() ? ['sealed=1', ...super.params()] : super.params();
  }

  handle(env, resolveConnect) {
    if (env.event === 'session:ack') {
      this.policy = env.data.reconnect || DEFAULT_POLICY;
      this.attempts = 0;
    }
    if (env.event === 'game:question:key') { this.openKey(env.data); return; }
    // A sealed show is not processed until its key opens it; room events after it wait behind it, so lastSeq stays
    // before it and a resume gets it again (sealed with the new edge's key, or in clear).
    if (this.sealed && env.seq !== undefined) {
      if (env.seq > this.sealed.seq) this.sealed.after.push(env);
      return;
    }
    if (env.event === 'game:question:show' && env.data.sealed && env.seq !== undefined && env.seq > this.lastSeq) {
      this.sealed = { data: env.data, seq: env.seq, after: [] };
      return;
    }
    // A snapshot's sealed question: the page counts down to its showAt; the key brings the content.
    if (env.event === 'reconnect:state' && env.data.currentQ && env.data.currentQ.sealed) this.snapSealed = env.data.currentQ;
    super.handle(env, resolveConnect);
  }

  // game:question:key: opens the sealed show (or the snapshot's sealed question) and hands it to the page.
  async openKey(k) {
    const code = this.session && this.session.gameCode;
    const s = this.sealed;
    if (s && s.data.qIndex === k.qIndex && !s.opening) {
      s.opening = true;
      const data = await openSealed(s.data, k.key, code).catch(() => null);
      if (this.sealed !== s) return; // resumed meanwhile: the show comes again
      this.sealed = null;
      if (data) super.handle({ event: 'game:question:show', seq: s.seq, data });
      else this.lastSeq = Math.max(this.lastSeq, s.seq); // cannot open it (never expected): skip, do not stall
      s.after.forEach((e) => this.handle(e));
      return;
    }
    const q = this.snapSealed;
    if (q && q.qIndex === k.qIndex) {
      this.snapSealed = null;
      const data = await openSealed(q, k.key, code).catch(() => null);
      if (data) this.onEvent({ event: 'game:question:show', data });
    }
  }

  // Attempt n waits min(delayMs·2ⁿ, 8 s) + uniform(0, jitterMs); "at once" (a drain's 1012) is attempt 0's wait,
  // so the sockets of a draining or dead edge reach the survivors spread over the window (docs/protocol.md §4).
  reconnectDelay(advice) {
    const p = this.policy;
    const n = advice === 'now' ? 0 : this.attempts;
    this.attempts += 1;
    return Math.min(p.delayMs * 2 ** n, MAX_BACKOFF_MS) + Math.random() * p.jitterMs;
  }

  setReady(ready) {
    this.ready = ready;
    if (ready) this.waiters.splice(0).forEach((w) => w());
  }

  // Resolves once requests can go out (at most timeoutMs later, else rejects with code "offline").
  whenReady(timeoutMs) {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject({ code: 'offline' }), timeoutMs);
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  status(s) {
    if (s === 'connected') {
      this.online = true;
      if (!this.session) this.setReady(true);
      this.hooks.onLine(true, 0);
      return;
    }
    const m = /^disconnected \((\d+)\)/.exec(s);
    if (!m) return;
    this.online = false;
    this.setReady(false);
    // Requests of the dropped socket get no reply: they fail now ("offline") instead of at their timeout; an
    // answer among them is resent on the next socket (answer()).
    const lost = [...this.pending.values()];
    this.pending.clear();
    lost.forEach(({ reject }) => reject({ code: 'offline' }));
    const advice = reconnectAdvice(+m[1]);
    const final = advice === 'never';
    this.closedForGood = final;
    this.hooks.onLine(false, +m[1], final);
    // ringside.js reconnects sockets that hold a session; one without (a join form) is opened again here.
    if (!this.session && !this.stopped && !final) {
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.start(), this.reconnectDelay(advice));
    }
  }

  // Opens the socket; with a session (restored from storage), resumes it.
  start() {
    (this.session ? this.resumingConnect() : this.connect()).then(() => { if (this.session) this.resume(); });
  }

  // Called by ringside.js after a drop, for a socket that held a session.
  async reconnect() {
    await this.resumingConnect();
    if (this.session) await this.resume();
  }

  async resume() {
    const s = this.session;
    if (!s) return;
    // a sealed question without its key is asked for again (its events were not processed)
    this.sealed = null;
    this.snapSealed = null;
    const data = { gameCode: s.gameCode, playerId: s.playerId, sessionToken: s.sessionToken };
    if (this.lastSeq > 0) data.lastSeq = this.lastSeq;
    try {
      const reply = await this.request('reconnect:attempt', data);
      this.setReady(true);
      this.hooks.onResumed(reply);
    } catch (e) {
      // The socket dropped while resuming: the reconnect that follows resumes again.
      if (e.code === 'offline' && !this.online) return;
      if (RETRYABLE.has(e.code)) {
        setTimeout(() => this.resume(), e.retryAfterMs || 1000);
        return;
      }
      this.session = null;
      this.setReady(true);
      this.hooks.onResumeFailed(e);
    }
  }

  send(event, data, rid) {
    // A ping timer may fire while a new socket is still connecting; that ping is simply skipped.
    if (this.ws && this.ws.readyState === WebSocket.OPEN) super.send(event, data, rid);
  }

  // Waits (up to 8 s) for the connection and the resumed session, then times the reply out after timeoutMs.
  // An answer is resent across socket drops (answer()); a join or create refused with overloaded/unavailable is
  // sent again after its retryAfterMs, a few times.
  async request(event, data, timeoutMs = 10000) {
    if (event === 'game:answer:submit') return this.answer(data, timeoutMs);
    if (!SESSION_EVENTS.has(event)) return this.requestOnce(event, data, timeoutMs);
    for (let tries = 1; ; tries++) {
      try {
        return await this.requestOnce(event, data, timeoutMs);
      } catch (e) {
        if (!RETRY_LATER.has(e.code) || !e.retryAfterMs || tries >= 5) throw e;
        await sleep(e.retryAfterMs);
      }
    }
  }

  // An answer whose socket dropped before its reply is sent again, unchanged, once the session is resumed on the
  // next socket: the first answer stands, so the resend gets the original ack or already_answered (the caller
  // treats both as sent) — never a second count, never silence (docs/protocol.md §4).
  async answer(data, timeoutMs) {
    const until = Date.now() + ANSWER_RESEND_MS;
    for (;;) {
      try {
        return await this.requestOnce('game:answer:submit', data, timeoutMs);
      } catch (e) {
        if (Date.now() > until || this.closedForGood) throw e;
        if (e.code === 'offline') { await sleep(250); continue; } // then requestOnce waits for the resumed session
        if (RETRY_LATER.has(e.code) && e.retryAfterMs) { await sleep(e.retryAfterMs); continue; }
        throw e;
      }
    }
  }

  async requestOnce(event, data, timeoutMs) {
    if (event !== 'reconnect:attempt') await this.whenReady(8000);
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw { code: 'offline' };
    let timer;
    return Promise.race([
      super.request(event, data).finally(() => clearTimeout(timer)),
      new Promise((_, reject) => { timer = setTimeout(() => reject({ code: 'timeout' }), timeoutMs); }),
    ]);
  }
}

// ── fair start: sealed questions (docs/protocol.md §7.3) ──────────────────────────────────────────────────
export function canOpenSealed() {
  return !!(globalThis.isSecureContext && globalThis.crypto && crypto.subtle);
}

const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

// AES-256-GCM of {question, answers, imageUrl} with the question's key; additional data "gameCode:qIndex".
export async function openSealed(data, keyB64, gameCode) {
  const key = await crypto.subtle.importKey('raw', unb64(keyB64), 'AES-GCM', false, ['decrypt']);
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: unb64(data.sealed.iv), additionalData: new TextEncoder().encode(`${gameCode}:${data.qIndex}`) },
    key, unb64(data.sealed.ct));
  const c = JSON.parse(new TextDecoder().decode(plain));
  const out = { ...data, question: c.question, answers: c.answers };
  delete out.sealed;
  if (c.imageUrl) out.imageUrl = c.imageUrl;
  return out;
}

// Why a socket closed for good, in words (close codes of docs/protocol.md §4).
export function closeWords(code) {
  const c = CLOSE_CODES[code];
  return `The connection was closed${c ? ` (${c.name})` : ''}. Reload the page to reconnect.`;
}

// ── storage ──────────────────────────────────────────────────────────────────────────────────────────────
const MAX_AGE_MS = 4 * 3600 * 1000; // longer than any game plus the 300 s the room stays readable after it

export function loadSaved(area, key) {
  try {
    const v = JSON.parse(area.getItem(key));
    if (v && Date.now() - v.savedAt < MAX_AGE_MS) return v;
  } catch { /* storage blocked or corrupt: start fresh */ }
  return null;
}
export function save(area, key, value) {
  try { area.setItem(key, JSON.stringify({ ...value, savedAt: Date.now() })); } catch { /* private mode */ }
}
export function forget(area, key) {
  try { area.removeItem(key); } catch { /* ignore */ }
}

// ── answer HMAC (docs/protocol.md §6) ──────────────────────────────────────────────────────────────────────
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

export function sha256(bytes) {
  const len = bytes.length, total = ((len + 9 + 63) >> 6) << 6;
  const m = new Uint8Array(total);
  m.set(bytes);
  m[len] = 0x80;
  const dv = new DataView(m.buffer);
  dv.setUint32(total - 4, len * 8);
  dv.setUint32(total - 8, Math.floor(len / 0x20000000));
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const odv = new DataView(out.buffer);
  h.forEach((v, i) => odv.setUint32(i * 4, v));
  return out;
}

export function hmacSha256(key, msg) {
  let k = key.length > 64 ? sha256(key) : key;
  const pad = new Uint8Array(64);
  pad.set(k);
  const inner = new Uint8Array(64 + msg.length), outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) { inner[i] = pad[i] ^ 0x36; outer[i] = pad[i] ^ 0x5c; }
  inner.set(msg, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

export async function answerHash(secret, gameCode, playerId, qIndex, answerIdx) {
  if (globalThis.crypto && crypto.subtle) return Ringside.answerHash(secret, gameCode, playerId, qIndex, answerIdx);
  const enc = new TextEncoder();
  const sig = hmacSha256(enc.encode(secret), enc.encode(`${gameCode}:${playerId}:${qIndex}:${answerIdx}`));
  return [...sig].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ── options: colour + shape + text ─────────────────────────────────────────────────────────────────────
export const SHAPES = ['triangle', 'diamond', 'circle', 'square', 'star', 'hexagon', 'pentagon', 'cross'];
const SHAPE_PATHS = {
  triangle: 'M12 3 22 20H2z',
  diamond: 'M12 2 22 12 12 22 2 12z',
  circle: 'M12 2a10 10 0 1 0 .01 0z',
  square: 'M3 3h18v18H3z',
  star: 'M12 2l3 7h7l-5.5 4.5 2 7.5-6.5-4.5-6.5 4.5 2-7.5L2 9h7z',
  hexagon: 'M7 3h10l5 9-5 9H7l-5-9z',
  pentagon: 'M12 2l10 7.5-4 12.5H6L2 9.5z',
  cross: 'M9 2h6v7h7v6h-7v7H9v-7H2V9h7z',
};
export function shapeSvg(i) {
  return `<svg class="shape" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="${SHAPE_PATHS[SHAPES[i % 8]]}"/></svg>`;
}
export const shapeName = (i) => SHAPES[i % 8];

// ── DOM helpers ─────────────────────────────────────────────────────────────────────────────────────────
export const $ = (id) => document.getElementById(id);
export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
export function ordinal(n) {
  const s = ['th', 'st', 'nd', 'rd'], v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}
export const fmt = (n) => Number(n || 0).toLocaleString('en-US');
// Show exactly one of the page's screens (elements with class "screen").
// A new screen starts at the top (a long form scrolled down must not hide the next screen's head).
let shown = null;
export function show(id) {
  for (const el of document.querySelectorAll('.screen')) el.hidden = el.id !== id;
  if (shown !== null && shown !== id) window.scrollTo(0, 0);
  shown = id;
}
// Avatar colour for a player, stable per id.
export function avatarColor(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return ['#C8102E', '#1368CE', '#946200', '#1F7A0A', '#7C3AED', '#0E7490', '#BE185D', '#4B5563'][h % 8];
}

// The top three as podium steps, 2nd · 1st · 3rd from left to right.
export function podium(rankings, me) {
  const top = rankings.slice(0, 3);
  const order = [1, 0, 2].filter((i) => top[i]);
  return order.map((i) => {
    const r = top[i];
    return `<li class="step p${r.rank}${r.id === me ? ' me' : ''}"><span class="pname">${esc(r.name)}</span><span class="pscore">${fmt(r.score)}</span><span class="pblock"><span class="sr">place </span>${r.rank}</span></li>`;
  }).join('');
}
