// The browser test of web/: Debian's Chromium (headless, through playwright-core; no browser download) plays
// a whole game against a real stack — a host on a 16:9 desktop and three players (two phones, 390 and 320 px
// wide, and a desktop), with a fourth player kicked from the lobby, a player reload mid-question, a host
// reload while paused, pause/resume, skip, the reveal, the leaderboard and the podium. On the way it checks
// accessibility (axe-core: labels, contrast ≥ 4.5:1 and the rest of WCAG 2 A/AA), keyboard submit, error
// messages in words, the console, that no request leaves the page's origin, that the host token is never in
// the page, the weight of the first load, and that the lobby's QR code decodes to the join URL.
// Screenshots and service logs: webtest/artifacts/. Run: scripts/webtest.sh (or `node webtest/run.mjs`).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import jsQR from 'jsqr';
import { ROOT, build, startStack } from './stack.mjs';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const ARTIFACTS = path.join(ROOT, 'webtest', 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const t0 = Date.now();
// Quiz images are the quiz author's content, shown on the host page from wherever the quiz points; they are
// the only requests allowed to leave the page's origin, and are answered here by a local stand-in.
const QUIZ_IMAGES = new Set(fs.readdirSync(path.join(ROOT, 'quizzes')).filter((f) => f.endsWith('.json'))
  .flatMap((f) => JSON.parse(fs.readFileSync(path.join(ROOT, 'quizzes', f), 'utf8')).questions.map((q) => q.imageUrl).filter(Boolean)));
const STAND_IN_IMAGE = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 3"><rect width="4" height="3" fill="#8fb3d9"/></svg>';
const failures = [];
const say = (s) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${s}`);
function check(ok, what) {
  if (ok) return;
  failures.push(what);
  say(`FAIL ${what}`);
}

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });

// ── static checks: no stack needed ────────────────────────────────────────────────────────────────────
{
  // Every error code of docs/protocol.md §4 has words in web/words.js.
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## 4. Errors'), doc.indexOf('### WebSocket close codes'));
  const codes = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((x) => x[1]);
  const { ERROR_CODES } = await import(path.join(ROOT, 'web', 'words.js'));
  const missing = codes.filter((c) => !ERROR_CODES.includes(c));
  check(codes.length >= 20, `docs/protocol.md §4 lists the error codes (found ${codes.length})`);
  check(missing.length === 0, `web/words.js has words for every documented error code (missing: ${missing.join(', ')})`);
}

build();
say('stack: starting redis, engine, edge');
const stack = await startStack(ARTIFACTS);
const BASE = stack.base;
say(`stack: ${BASE}`);

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
const pages = [];
let shot = 0;

async function open(name, viewport, url, mobile = false) {
  // Reduced motion (which the pages honour): screenshots and contrast checks see finished screens, not animations.
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, isMobile: mobile, hasTouch: mobile, reducedMotion: 'reduce' });
  await ctx.route((u) => QUIZ_IMAGES.has(u.href), (r) => r.fulfill({ contentType: 'image/svg+xml', body: STAND_IN_IMAGE }));
  return openIn(ctx, name, url);
}

// A page in an existing context (a new tab of the same browser), watched for console errors and foreign requests.
async function openIn(ctx, name, url) {
  const page = await ctx.newPage();
  page.name = name;
  page.errors = [];
  page.external = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // The host page probes the control plane under /api/ (404 where it is not routed, 401 before sign-in).
    if (/Failed to load resource/.test(msg.text()) && /\/api\//.test(msg.location().url || '')) return;
    page.errors.push(msg.text());
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  // Each socket's session:ack pingInterval and when the page sent its pings (checked at the end: the page follows it).
  page.sockets = [];
  page.on('websocket', (ws) => {
    const sock = { every: 0, pings: [] };
    page.sockets.push(sock);
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string' && f.payload.includes('"session:ack"')) sock.every = JSON.parse(f.payload).data.pingInterval;
    });
    ws.on('framesent', (f) => {
      // the page's own send time (the ping's `t`): the test process gets CDP's frame events late and in bursts
      // on a busy machine, so its receipt times are no measure of the page's timer
      if (typeof f.payload === 'string' && f.payload.startsWith('{"event":"ping"')) sock.pings.push(JSON.parse(f.payload).data.t);
    });
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !/^(data|blob):/.test(r.url()) && !QUIZ_IMAGES.has(r.url())) page.external.push(r.url());
  });
  await page.goto(BASE + url);
  pages.push(page);
  return page;
}

async function snap(page, what) {
  shot += 1;
  const file = `${String(shot).padStart(2, '0')}-${page.name}-${what}.png`;
  await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: false });
}

async function axe(page, what) {
  await page.evaluate(AXE);
  const r = await page.evaluate(() => globalThis.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  for (const v of r.violations) {
    const nodes = v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ');
    check(false, `axe ${page.name} ${what}: ${v.id} (${v.impact}) — ${v.help} — ${nodes}`);
  }
}

const visible = (page, id, timeout = 20000) => page.waitForSelector(`#${id}:not([hidden])`, { timeout });
const text = (page, sel) => page.textContent(sel);

async function waitQuestion(page, n, timeout = 30000) {
  await page.waitForFunction((n) => !document.getElementById('s-question').hidden
    && document.getElementById('q-num').textContent.startsWith(`Question ${n} of`), n, { timeout });
}
async function answer(page, i) {
  await page.click(`#q-tiles button[data-i="${i}"]`);
  await page.waitForFunction(() => /locked in/.test(document.getElementById('q-state').textContent), null, { timeout: 10000 });
}
async function hostTokenShown(host) {
  return host.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('ringside.host') || 'null');
    const t = s && s.m && s.m.session && s.m.session.sessionToken;
    return !!t && (document.documentElement.outerHTML.includes(t) || document.body.innerText.includes(t));
  });
}

// Decodes the lobby's QR code as a phone camera would: the SVG drawn into a canvas, read by jsQR.
async function decodeQr(page) {
  const { w, data } = await page.evaluate(async () => {
    const svg = document.querySelector('#qr svg');
    const img = new Image();
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg.outerHTML);
    await img.decode();
    const w = 330, c = document.createElement('canvas');
    c.width = w; c.height = w;
    const g = c.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(img, 0, 0, w, w);
    return { w, data: Array.from(g.getImageData(0, 0, w, w).data) };
  });
  const r = jsQR(Uint8ClampedArray.from(data), w, w);
  return r && r.data;
}

// Bytes of a page's first load (the HTML and everything it loads), gzip-compressed as a server would send.
async function firstLoadBytes(url) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  let total = 0;
  const bodies = [];
  page.on('response', (r) => bodies.push(r.body().then((b) => { total += zlib.gzipSync(b).length; }).catch(() => {})));
  await page.goto(BASE + url, { waitUntil: 'networkidle' });
  await Promise.all(bodies);
  await ctx.close();
  return total;
}

// The host page on the control-plane API. A stand-in for control/ answers /api/ as issue 12's contract says
// (once the edge routes /api/ to the control plane, point this at it instead); the room itself is real,
// created on the edge as the control plane does.
async function apiFlow() {
  const KEY = 'rk_test_5f2a9c';
  const helper = await browser.newPage();
  await helper.goto(`${BASE}/`);
  const wsCreate = (body) => helper.evaluate((body) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`, 'ringside.v1.json');
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.event === 'session:ack') ws.send(JSON.stringify({ event: 'room:create', rid: 1, data: body }));
      else if (e.rid === 1) { ws.close(); if (e.event === 'error') reject(new Error(e.data.code)); else resolve(e.data); }
    };
  }), body);
  let imported = false;
  const quizzes = () => [
    { id: 'general-knowledge', title: 'General knowledge', questionCount: 10, visibility: 'public', owner: 'Ringside', mine: false, updatedAt: '2026-12-06T01:00:00Z' },
    ...(imported ? [{ id: 'my-capitals', title: 'Capitals', questionCount: 3, visibility: 'private', owner: 'Ms. Rivera', mine: true, updatedAt: '2026-12-06T02:00:00Z' }] : []),
  ];
  const calls = [];
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, reducedMotion: 'reduce' });
  await ctx.route('**/api/**', async (route) => {
    const req = route.request();
    const k = `${req.method()} ${new URL(req.url()).pathname}`;
    calls.push(k);
    const json = (status, body) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
    if (req.headers().authorization !== `Bearer ${KEY}`) return json(401, { error: { code: 'unauthorized', message: 'a valid API key is required' } });
    if (k === 'GET /api/me') return json(200, { hostId: 1, name: 'Ms. Rivera' });
    if (k === 'GET /api/quizzes') return json(200, { quizzes: quizzes() });
    if (k === 'GET /api/games') {
      return json(200, { games: [{ roomId: 'r01JD3ZKX', gameCode: 'K7QP2M', quizId: 'general-knowledge', title: 'General knowledge',
        startedAt: '2026-12-05T18:00:00Z', endedAt: '2026-12-05T18:09:00Z', playerCount: 24, state: 'ENDED' }], next: null });
    }
    if (k === 'GET /api/games/r01JD3ZKX/results.csv') {
      return route.fulfill({ status: 200, contentType: 'text/csv', body: 'rank,name,score\n1,Ada,4200\n' });
    }
    if (k === 'POST /api/quizzes') {
      const q = req.postDataJSON().quiz.questions[2];
      if (q.correct >= q.options.length) {
        return json(400, { error: { code: 'invalid_quiz', message: 'questions[2].correct: must index options', field: 'questions[2].correct' } });
      }
      imported = true;
      return json(201, quizzes()[1]);
    }
    if (k === 'POST /api/rooms') {
      const body = req.postDataJSON();
      return json(201, await wsCreate({ ...body, quizId: 'general-knowledge' }));
    }
    return json(404, { error: { code: 'not_found', message: 'no such route' } });
  });
  const page = await ctx.newPage();
  page.name = 'host-api';
  page.errors = [];
  page.external = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  pages.push(page);
  await page.goto(`${BASE}/host.html`);
  await visible(page, 'signin');
  await page.fill('#apikey', 'wrong');
  await page.press('#apikey', 'Enter');
  await page.waitForFunction(() => /not accepted/.test(document.getElementById('signin-error').textContent));
  await page.fill('#apikey', KEY);
  await page.press('#apikey', 'Enter');
  await visible(page, 'acct-in');
  check((await text(page, '#acct-name')) === 'Ms. Rivera', 'signed in, the host page names the host');
  check(!(await page.content()).includes(KEY), 'the API key is not in the page after sign-in');
  await visible(page, 'quiz-list');
  await visible(page, 'history');
  check(await page.isVisible('#games a[href$="/results.csv"]'), 'past games link their CSV results');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#games a[href$="/results.csv"]')]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  check(csv.startsWith('rank,name,score'), 'the CSV of a past game downloads with the API key');
  await page.click('#import-box summary');
  const quiz = (correct) => Buffer.from(JSON.stringify({ id: 'my-capitals', title: 'Capitals', questions: [
    { text: 'Capital of France?', options: ['Paris', 'Lyon'], correct: 0 },
    { text: 'Capital of Peru?', options: ['Lima', 'Cusco'], correct: 0 },
    { text: 'Capital of Chad?', options: ["N'Djamena", 'Moundou'], correct } ] }));
  await page.setInputFiles('#import-file', { name: 'capitals.json', mimeType: 'application/json', buffer: quiz(5) });
  await page.click('#import-btn');
  await page.waitForFunction(() => document.getElementById('import-result').textContent.length > 0);
  check((await text(page, '#import-result')).includes('questions[2].correct'), `an invalid quiz names the field (${await text(page, '#import-result')})`);
  await axe(page, 'setup-api');
  await snap(page, 'setup-api-import-error');
  await page.setInputFiles('#import-file', { name: 'capitals.json', mimeType: 'application/json', buffer: quiz(0) });
  await page.click('#import-btn');
  await page.waitForFunction(() => /Imported/.test(document.getElementById('import-result').textContent));
  check(await page.isChecked('#quiz-list input[value="my-capitals"]'), 'the imported quiz is listed and selected');
  await page.click('#create-btn');
  await visible(page, 's-lobby');
  check(calls.includes('POST /api/rooms'), 'signed in, the room is created with POST /api/rooms');
  await page.reload();
  await visible(page, 's-lobby', 10000);
  check(!(await hostTokenShown(page)), 'the host token (from POST /api/rooms) is not in the page');
  say(`api: ${[...new Set(calls)].join(', ')}`);
  await ctx.close();
  await helper.close();
}

// A player reloads during a reveal and resumes from a snapshot (no seq): the page shows that reveal — the
// verdict, the correct answer lit, their pick — not "next question coming". A room of its own, hosted over a
// socket, with a one-minute reveal so the reload surely lands in it.
async function revealReloadFlow() {
  const helper = await browser.newPage();
  await helper.goto(`${BASE}/`);
  const code = await helper.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws`, 'ringside.v1.json');
    window.hostWs = ws;
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.event === 'session:ack') {
        ws.send(JSON.stringify({ event: 'room:create', rid: 1, data: { quizId: 'general-knowledge', settings: { countdownMs: 0, revealPauseMs: 60000 } } }));
      } else if (e.rid === 1) {
        if (e.event === 'error') reject(new Error(e.data.code)); else resolve(e.data.gameCode);
      }
    };
  }));
  const dee = await open('dee-390', { width: 390, height: 844 }, `/play.html?code=${code}`, true);
  await dee.fill('#name', 'Dee');
  await dee.press('#name', 'Enter');
  await visible(dee, 's-lobby');
  await helper.evaluate((code) => window.hostWs.send(JSON.stringify({ event: 'game:start', rid: 3, data: { gameCode: code } })), code);
  await waitQuestion(dee, 1);
  await answer(dee, 1); // the only player answered: revealed at once
  await visible(dee, 's-reveal');
  const before = await text(dee, '#v-title');
  await dee.evaluate(() => {
    for (const area of [sessionStorage, localStorage]) {
      const s = JSON.parse(area.getItem('ringside.player'));
      s.lastSeq = 0;
      area.setItem('ringside.player', JSON.stringify(s));
    }
  });
  await dee.reload();
  const back = await visible(dee, 's-reveal', 10000).then(() => true, () => false);
  check(back, 'a player who reloads during a reveal sees the reveal again (from a snapshot)');
  if (back) {
    check((await text(dee, '#v-title')) === before, `the verdict after the reload is the same (${before})`);
    check(await dee.isVisible('#r-tiles .tile.right .badge.ok'), 'after the reload the correct answer is lit');
    check(await dee.isVisible('#r-tiles .tile.c1.picked'), 'after the reload the pick is marked');
    check(/points/.test(await text(dee, '#v-points')) && !/Counting/.test(await text(dee, '#v-points')), 'after the reload the points are shown');
  }
  await snap(dee, 'reveal-after-reload');
  await helper.close();
  await dee.context().close();
  pages.splice(pages.indexOf(dee), 1);
  say('reveal: a player reload mid-reveal shows the reveal');
}

let exitCode = 1;
try {
  for (const p of ['/play.html', '/host.html', '/', '/ops.html']) {
    const bytes = await firstLoadBytes(p);
    say(`first load of ${p}: ${(bytes / 1024).toFixed(1)} KB compressed`);
    check(bytes <= 100 * 1024, `first load of ${p} is at most 100 KB compressed (${bytes} B)`);
  }

  // ── host: setup → lobby ───────────────────────────────────────────────────────────────────────────
  const host = await open('host', { width: 1600, height: 900 }, '/host.html');
  await visible(host, 's-setup');
  await host.waitForSelector('#acct-none:not([hidden]), #signin:not([hidden]), #acct-in:not([hidden])');
  // With the control plane in the stack (PostgreSQL installed), /api/me answers and the page signs in with the
  // host's API key, lists the library, shows an import refused by the real API, and creates the room with
  // POST /api/rooms. Without it the page falls back to room:create over the socket with a public quiz id.
  const apiKey = process.env.WEBTEST_API_KEY || stack.apiKey;
  if (stack.apiKey) check(await host.isVisible('#signin'), 'with the control plane the host page asks for an API key');
  if (await host.isVisible('#signin')) {
    if (apiKey) {
      await host.fill('#apikey', apiKey);
      await host.press('#apikey', 'Enter');
      await visible(host, 'acct-in');
      check(!(await host.content()).includes(apiKey), 'the API key is not in the page');
      await host.click('#import-box summary');
      await host.setInputFiles('#import-file', { name: 'broken.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({
        id: 'webtest-broken', title: 'Broken', questions: [{ text: 'Two plus two?', options: ['4', '5'], correct: 7 }] })) });
      await host.click('#import-btn');
      await host.waitForFunction(() => document.getElementById('import-result').textContent.length > 0);
      const refusal = await text(host, '#import-result');
      check(/Question 1, field “correct”/.test(refusal), `the control plane's refusal names the question and field (${refusal})`);
      await snap(host, 'setup-import-refused');
      await host.click('#import-box summary');
    } else {
      await host.click('#skip-signin');
    }
  }
  if (await host.isVisible('#quiz-list')) await host.check('#quiz-list input[value="general-knowledge"]');
  else await host.fill('#quiz-id', 'general-knowledge');
  await host.fill('#secs', '12');
  await host.fill('#gap', '2');
  await axe(host, 'setup');
  await snap(host, 'setup');
  await host.click('#create-btn');
  await visible(host, 's-lobby');
  const pin = (await text(host, '#join-pin')).trim();
  check(/^[A-Z2-9]{6}$/.test(pin), `the lobby shows a 6-character PIN (${pin})`);
  const joinUrl = (await text(host, '#join-url')).trim();
  check(joinUrl === `${BASE}/play.html?code=${pin}`, `the join URL opens the player page with the PIN (${joinUrl})`);
  const qr = await decodeQr(host);
  check(qr === joinUrl, `the QR code decodes to the join URL (${qr})`);
  check((await fetch(joinUrl)).ok, 'the join URL answers 200');
  check(!(await hostTokenShown(host)), 'the host token is not in the lobby page');
  say(`lobby: PIN ${pin}`);

  // ── players join: by link + Enter, by typing, with errors in words ──────────────────────────────
  let ada = await open('ada-390', { width: 390, height: 844 }, `/play.html?code=${pin}`, true);
  const bo = await open('bo-320', { width: 320, height: 640 }, '/play.html', true);
  const cy = await open('cy-desktop', { width: 1280, height: 800 }, '/play.html');
  const kim = await open('kim-390', { width: 390, height: 844 }, `/play.html?code=${pin}`, true);

  check((await ada.inputValue('#code')) === pin, 'a join link prefills the PIN');
  await axe(ada, 'join');
  await snap(ada, 'join');
  await ada.fill('#name', 'Ada');
  await ada.press('#name', 'Enter'); // keyboard: Enter submits
  await visible(ada, 's-lobby');

  await bo.click('#join-btn'); // empty form
  check(/PIN/.test(await text(bo, '#join-error')), 'an empty PIN is refused in words');
  check((await bo.getAttribute('#code', 'aria-invalid')) === 'true', 'the empty PIN field is marked invalid');
  await bo.fill('#code', 'ZZZZZZ');
  await bo.fill('#name', 'Bo');
  await bo.click('#join-btn');
  await bo.waitForFunction(() => document.getElementById('join-error').textContent.length > 0);
  check(/No game with that PIN/.test(await text(bo, '#join-error')), `an unknown PIN is explained (${await text(bo, '#join-error')})`);
  await snap(bo, 'join-error');
  await bo.fill('#code', pin.toLowerCase());
  await bo.click('#join-btn');
  await visible(bo, 's-lobby');

  await cy.fill('#code', pin);
  await cy.fill('#name', 'ada'); // taken, case-insensitively
  await cy.press('#name', 'Enter');
  await cy.waitForFunction(() => document.getElementById('join-error').textContent.length > 0);
  check(/already has that nickname/.test(await text(cy, '#join-error')), 'a taken nickname is explained');
  await cy.fill('#name', 'Cy');
  await cy.press('#name', 'Enter');
  await visible(cy, 's-lobby');

  await kim.fill('#name', 'Kim');
  await kim.press('#name', 'Enter');
  await visible(kim, 's-lobby');
  await axe(ada, 'lobby');
  await snap(ada, 'lobby');

  // Names appear on the host as they join (coalesced, at most one update a second).
  await host.waitForFunction(() => document.querySelectorAll('#players .chip').length === 4, null, { timeout: 10000 });
  await axe(host, 'lobby');
  await snap(host, 'lobby');

  // The host changes the join address to one phones can reach; the QR code follows.
  check(await host.isVisible('#join-warn'), 'a loopback join address is flagged as unreachable from phones');
  const lan = `http://192.168.1.20:${new URL(BASE).port}`;
  await host.click('.base-edit summary');
  await host.fill('#base2', lan);
  await host.press('#base2', 'Enter');
  await host.waitForFunction((u) => document.getElementById('join-url').textContent.startsWith(u), lan);
  check((await decodeQr(host)) === `${lan}/play.html?code=${pin}`, 'after changing the join address the QR code carries it');
  check(!(await host.isVisible('#join-warn')), 'a LAN join address is not flagged');
  await axe(host, 'lobby-address');

  // Kick from the list.
  await host.click('#players button[aria-label="Remove Kim"]');
  await visible(kim, 's-out');
  check(/removed/i.test(await text(kim, '#out-text')), 'the kicked player is told so in words');
  await kim.waitForTimeout(300); // the 4003 close follows the kick
  check(!(await kim.isVisible('#conn')), 'no "connecting" banner on the kicked screen');
  await snap(kim, 'kicked');
  await host.waitForFunction(() => document.querySelectorAll('#players .chip').length === 3 && document.getElementById('p-count').textContent === '3');
  say('lobby: 3 players (Kim kicked)');

  // The host reloads the lobby with its stored list gone and no seq (as after a snapshot): the names come
  // back from the server (room:players), not from the page's storage.
  await host.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('ringside.host'));
    s.m.players = []; s.lastSeq = 0;
    localStorage.setItem('ringside.host', JSON.stringify(s));
  });
  await host.reload();
  await visible(host, 's-lobby', 10000);
  const rosterBack = await host.waitForFunction(() => document.querySelectorAll('#players .chip').length === 3, null, { timeout: 10000 }).then(() => true, () => false);
  const names = await host.$$eval('#players .chip-name', (els) => els.map((e) => e.textContent).sort());
  check(rosterBack && names.join(',') === 'Ada,Bo,Cy', `after a reload from a snapshot the host's lobby lists the players (${names.join(', ')})`);
  check(!(await hostTokenShown(host)), 'the host token is not in the lobby after a reload');
  await snap(host, 'lobby-after-reload');

  // ── question 1: answers, "your answer", a player reload mid-question ───────────────────────────
  await host.click('#start');
  await visible(ada, 's-countdown');
  await snap(host, 'countdown');
  for (const p of [host, ada, bo, cy]) await waitQuestion(p, 1);
  await snap(host, 'q1');
  const qPx = await host.evaluate(() => parseFloat(getComputedStyle(document.getElementById('q-text')).fontSize));
  check(qPx >= 48, `the host shows the question at 48 px or more (${qPx} px)`);
  await axe(host, 'question');
  await answer(ada, 0);
  check(await ada.isVisible('#q-tiles button.picked .badge'), 'the picked tile is marked "Your answer"');
  check(await ada.isDisabled('#q-tiles button[data-i="1"]'), 'the other tiles are disabled after answering');
  check(!(await ada.$('#q-tiles .right, #q-tiles .correct')), 'nothing is marked correct before the reveal');
  await axe(ada, 'question-answered');
  await snap(ada, 'q1-answered');

  // A latecomer (the kicked phone, trying again under another name) is told the game has started.
  await kim.goto(`${BASE}/play.html?code=${pin}`);
  await kim.fill('#name', 'Latecomer');
  await kim.press('#name', 'Enter');
  await kim.waitForFunction(() => document.getElementById('join-error').textContent.length > 0);
  check(/already started/.test(await text(kim, '#join-error')), `a late join is refused in words (${await text(kim, '#join-error')})`);

  const q1text = await text(bo, '#q-text');
  await bo.reload();
  await waitQuestion(bo, 1, 10000);
  check((await text(bo, '#q-text')) === q1text, 'after a reload mid-question the player sees the same question');
  check((await text(bo, '#who')) === 'Bo', 'after a reload the player keeps their nickname');
  await snap(bo, 'q1-after-reload');
  await answer(bo, 1);
  await answer(cy, 2);
  await visible(ada, 's-reveal');
  for (const p of [bo, cy]) await visible(p, 's-reveal');
  await visible(host, 's-reveal');
  await host.waitForSelector('#r-board-panel:not([hidden])');
  for (const p of [ada, bo, cy]) {
    const v = await text(p, '#v-title');
    check(/Correct|Wrong/.test(v), `${p.name} sees correct/wrong after answering (${v})`);
    check(await p.isVisible('#r-tiles .tile.right .badge.ok'), `${p.name} sees the correct answer lit`);
    check(await p.isVisible('#r-tiles .tile.picked'), `${p.name} sees their pick marked`);
  }
  await ada.waitForFunction(() => /points/.test(document.getElementById('v-points').textContent) && !/Counting/.test(document.getElementById('v-points').textContent));
  await axe(ada, 'reveal');
  await snap(ada, 'q1-reveal');
  await snap(bo, 'q1-reveal');
  await axe(host, 'reveal');
  await snap(host, 'q1-reveal');
  check(/^✓/.test((await text(host, '#r-correct')).trim()), 'the host names the correct answer');
  check((await host.$$('#r-bars .barrow')).length === 4, 'the host shows a distribution bar per option');

  // ── the ops page during the game ───────────────────────────────────────────────────────────────
  const ops = await open('ops', { width: 1280, height: 800 }, '/ops.html');
  const tile = (label) => ops.evaluate((label) => {
    const o = [...document.querySelectorAll('#game .op')].find((x) => x.querySelector('.op-label').textContent === label);
    return o ? o.querySelector('.op-value').textContent : null;
  }, label);
  await ops.waitForFunction(() => [...document.querySelectorAll('#edge .op')].some((o) => /Sockets open/.test(o.textContent)
    && Number(o.querySelector('.op-value').textContent.replace(/,/g, '')) >= 4), null, { timeout: 10000 });
  if (stack.opsToken) {
    // With the control plane: the room list needs the ops token; then rooms, processes, engine and Redis.
    await visible(ops, 'token-form', 10000);
    await axe(ops, 'token');
    await ops.fill('#token', 'not-the-token');
    await ops.press('#token', 'Enter');
    await ops.waitForFunction(() => /not accepted/.test(document.getElementById('token-help').textContent), null, { timeout: 10000 });
    await ops.fill('#token', stack.opsToken);
    await ops.press('#token', 'Enter');
    await visible(ops, 'rooms-box', 10000);
    const row = await ops.waitForFunction((pin) => [...document.querySelectorAll('#rooms tr')].find((tr) => tr.cells[0].textContent === pin)?.textContent, pin, { timeout: 10000 })
      .then((h) => h.jsonValue(), () => null);
    check(row && /3/.test(row) && /(ACTIVE|REVEAL)/.test(row), `the ops page lists the live room with its state and players (${row})`);
    check(Number(await tile('Live rooms')) >= 1, 'the ops page counts the live rooms');
    await ops.waitForFunction(() => document.querySelectorAll('#edges tr').length >= 1 && document.querySelectorAll('#engines tr').length >= 1
      && document.querySelectorAll('#redis tr').length >= 1, null, { timeout: 10000 });
    check(/yes/.test(await text(ops, '#edges tr')), 'the ops page shows the edge process up');
    const engine = await text(ops, '#engines tr');
    check(/yes/.test(engine) && /64/.test(engine), `the ops page shows the engine ready with its 64 partitions (${engine})`);
    check(/master/.test(await text(ops, '#redis tr')), 'the ops page shows the Redis node up');
    check(await tile('Timer lag p99') !== null && await tile('Partitions owned') === '64', 'the ops page shows the timer lag and partitions owned');
    check(!(await ops.content()).includes(stack.opsToken), 'the ops token is not in the page');
  }
  await ops.waitForTimeout(2500); // a few refreshes: rates and sparklines
  check(Number(await tile('Players online')) >= 3, `the ops page counts the players online (${await tile('Players online')})`);
  check(await tile('Answers / s') !== null && await tile('Send-queue bytes') !== null, 'the ops page shows answers per second and send-queue bytes');
  await axe(ops, 'live');
  await snap(ops, 'live');
  check(ops.errors.length === 0 && ops.external.length === 0, `the ops page: no console errors or foreign requests (${ops.errors.join(' | ')})`);
  await ops.context().close();
  pages.splice(pages.indexOf(ops), 1);

  // ── question 2: pause, host reload while paused, resume ─────────────────────────────────────────
  for (const p of [host, ada, bo, cy]) await waitQuestion(p, 2);
  await host.click('#pause');
  await ada.waitForFunction(() => /Paused/.test(document.getElementById('q-state').textContent));
  check(await ada.isDisabled('#q-tiles button[data-i="0"]'), 'answering is disabled while paused');
  await visible(host, 'paused');
  await snap(ada, 'q2-paused');
  await snap(host, 'q2-paused');
  await host.reload();
  await waitQuestion(host, 2, 10000);
  await visible(host, 'paused', 10000);
  check(await host.isVisible('#resume'), 'after a reload the host is still in the paused question with Resume');
  check(!(await hostTokenShown(host)), 'the host token is not in the page after a reload');
  await host.click('#resume');
  await ada.waitForFunction(() => !document.querySelector('#q-tiles button').disabled);
  // the host page hides the banner when its own game:resumed arrives, which may come after Ada's
  const bannerGone = await host.waitForSelector('#paused', { state: 'hidden', timeout: 10000 }).then(() => true, () => false);
  check(bannerGone, 'the paused banner goes away on resume');
  await answer(ada, 1);
  await answer(bo, 1);
  await answer(cy, 0);
  for (const p of [host, ada]) await visible(p, 's-reveal');
  say('q2: pause, host reload, resume');

  // ── question 3: +10 s, one player does not answer, the host skips ───────────────────────────────
  await waitQuestion(host, 3);
  await waitQuestion(cy, 3);
  await host.click('#extend');
  await answer(ada, 2);
  await ada.reload(); // after answering: the pick and its lock survive
  await waitQuestion(ada, 3, 10000);
  check(await ada.isVisible('#q-tiles button.picked[data-i="2"] .badge'), 'after a reload the answered tile is still marked "Your answer"');
  check(/locked in/.test(await text(ada, '#q-state')), 'after a reload the answer is still locked in');
  await answer(bo, 3);
  await host.click('#skip');
  await visible(cy, 's-reveal');
  check(/Time's up/.test(await text(cy, '#v-title')), `a player who did not answer sees "Time's up" (${await text(cy, '#v-title')})`);
  await snap(cy, 'q3-timesup');

  // ── question 4: every socket drops (the edge is killed and restarted), everyone resumes ─────────
  for (const p of [host, ada, bo, cy]) await waitQuestion(p, 4);
  await stack.restartEdge(async () => {
    await ada.waitForSelector('#conn:not([hidden])', { timeout: 5000 });
    check(/reconnecting/i.test(await text(ada, '#conn')), 'a dropped connection is shown as reconnecting');
    await snap(ada, 'q4-connection-lost');
  });
  for (const p of [host, ada, bo, cy]) await p.waitForSelector('#conn', { state: 'hidden', timeout: 15000 });
  for (const [p, i] of [[ada, 0], [bo, 1]]) await answer(p, i);
  await cy.keyboard.press('3'); // keyboard: keys 1–8 answer
  await cy.waitForFunction(() => document.querySelector('#q-tiles button[data-i="2"]').classList.contains('picked'));
  await visible(host, 's-reveal');
  check((await text(host, '#r-count')).startsWith('3 of 3'), 'after the drop every answer counted');
  say('q4: edge restarted, every page resumed');

  // ── the rest of the game ───────────────────────────────────────────────────────────────────────
  for (let n = 5; ; n++) {
    const next = await Promise.race([
      waitQuestion(host, n, 30000).then(() => 'q'),
      visible(host, 's-end', 30000).then(() => 'end'),
    ]);
    if (next === 'end') break;
    if (n === 5) {
      // Ada closes her tab and opens the page again: the join form offers to continue her game.
      await waitQuestion(ada, n);
      const ctx = ada.context();
      await ada.close();
      pages.splice(pages.indexOf(ada), 1);
      ada = await openIn(ctx, 'ada-390', '/play.html');
      await visible(ada, 'resume-box');
      check((await text(ada, '#resume-name')) === 'Ada', 'a new tab offers to continue as Ada');
      await axe(ada, 'join-continue');
      await snap(ada, 'q5-new-tab');
      await ada.click('#resume-btn');
      say('q5: Ada reopened her tab and continued');
    }
    if (!(await host.$eval('#q-img', (e) => e.hidden))) {
      await host.waitForFunction(() => document.getElementById('q-img').complete);
      await snap(host, `q${n}-image`);
    }
    for (const [p, i] of [[ada, n % 4], [bo, (n + 1) % 4], [cy, (n * 3) % 4]]) {
      await waitQuestion(p, n);
      await answer(p, Math.min(i, (await p.$$('#q-tiles button')).length - 1));
    }
    await visible(host, 's-reveal');
  }
  say('game over');
  {
    // The pages run on 127.0.0.1 (a secure context), so they asked for sealed questions (/ws?sealed=1) and
    // drew every question above only after opening it with its game:question:key (fair start).
    const text = await (await fetch(`${BASE}/metrics`)).text();
    const keys = text.split('\n').filter((l) => l.startsWith('ringside_edge_seal_keys_total'))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    check(keys > 0, `the pages played sealed questions (${keys} game:question:key frames sent)`);
    say(`fair start: ${keys} game:question:key frames sent to the pages since the edge's restart`);
  }

  // ── podium ───────────────────────────────────────────────────────────────────────────────────────
  await visible(host, 's-end');
  check((await host.$$('#end-podium .step')).length === 3, 'the host shows a podium of three');
  await axe(host, 'podium');
  await snap(host, 'podium');
  if (stack.apiKey) {
    // The control plane's results writer stores the finished game; the host downloads its CSV.
    const roomId = await host.evaluate(() => JSON.parse(localStorage.getItem('ringside.host')).m.roomId);
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      const r = await fetch(`${BASE}/api/games/${roomId}/results.csv`, { headers: { Authorization: `Bearer ${stack.apiKey}` } });
      if (r.ok) break;
      await new Promise((res) => setTimeout(res, 300));
    }
    check(await host.isVisible('#csv'), 'a game created through the API offers its results as CSV');
    const [dl] = await Promise.all([host.waitForEvent('download'), host.click('#csv')]);
    const csv = fs.readFileSync(await dl.path(), 'utf8');
    check(/Ada/.test(csv) && /Bo/.test(csv) && /Cy/.test(csv), `the results CSV lists the players (${csv.split('\n').length - 1} lines)`);
    fs.writeFileSync(path.join(ARTIFACTS, 'results.csv'), csv);
  }
  for (const p of [ada, bo, cy]) {
    await visible(p, 's-end');
    check(/You finished (1st|2nd|3rd) of 3/.test(await text(p, '#end-you')), `${p.name} sees their own final rank (${await text(p, '#end-you')})`);
  }
  await axe(bo, 'end');
  await snap(bo, 'end');
  await ada.reload();
  await visible(ada, 's-end', 10000);
  check(/You finished/.test(await text(ada, '#end-you')), 'after a reload on the end screen the player still sees the results');
  await snap(ada, 'end-after-reload');
  await host.reload();
  await visible(host, 's-end', 10000);

  await revealReloadFlow();
  await apiFlow();

  // The pages ping at session:ack's pingInterval after their 4 quick clock-sync pings (the first 5 pings 0.5 s
  // apart); a timer fires late, never early, so no later gap is shorter than the interval (10 % for rounding).
  let gaps = 0;
  for (const p of pages) {
    for (const sock of p.sockets || []) {
      for (let i = 5; i < sock.pings.length; i++) {
        const gap = sock.pings[i] - sock.pings[i - 1];
        gaps += 1;
        check(sock.every > 0 && gap >= 0.9 * sock.every, `${p.name} pings every pingInterval (${sock.every} ms): a gap of ${gap} ms`);
      }
    }
  }
  check(gaps > 0, 'some socket lived long enough to ping at its pingInterval');
  say(`pings: ${gaps} gaps after the clock-sync pings, each at least session:ack's pingInterval`);
  for (const p of pages) {
    check(p.errors.length === 0, `no console errors on ${p.name}: ${p.errors.join(' | ')}`);
    check(p.external.length === 0, `no requests outside the page's origin from ${p.name}: ${p.external.join(' ')}`);
  }
  exitCode = failures.length ? 1 : 0;
} catch (e) {
  failures.push(String(e.stack || e));
  console.error(e);
  for (const p of pages) await snap(p, 'at-failure').catch(() => {});
} finally {
  await browser.close().catch(() => {});
  await stack.stop();
}
say(`${failures.length ? `FAILED: ${failures.length} check(s)` : 'all checks passed'}; screenshots and logs in ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS}`);
for (const f of failures) console.log(`  - ${f}`);
process.exit(exitCode);
