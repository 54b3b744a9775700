// The host presenter page: set up a game (from the control-plane API when it answers under /api/, else with
// room:create over the socket and a public quiz id), then drive it on a projector: lobby with PIN, QR code and
// names, questions with a big timer, reveal with distribution bars and the leaderboard, the podium.
// The session (host token included) lives in localStorage and resumes with reconnect:attempt after a reload;
// the token is never put into the page.
import { GameClient, loadSaved, save, forget, shapeSvg, shapeName, $, esc, fmt, show, avatarColor, podium, closeWords } from './game.js';
import { forHost, hasWords } from './words.js';
import { qrSvg } from './qr.js';

const KEY = 'ringside.host';
const API_KEY = 'ringside.apiKey';
const BASE_KEY = 'ringside.publicBase';
const MAX_NAMES = 500; // names kept for the lobby list; the count is exact beyond that

let m = null; // the game model; null on the setup screen
let apiMode = false; // the control-plane API answered /api/me
let signedIn = false; // ... and accepted our API key: rooms are created with POST /api/rooms
const rs = new GameClient({ onEvent, onLine, onResumed, onResumeFailed });

function persist() {
  if (m) save(localStorage, KEY, { m, lastSeq: rs.lastSeq });
}

// ── control-plane API ─────────────────────────────────────────────────────────────────────────────────
function apiKey() {
  try { return localStorage.getItem(API_KEY) || ''; } catch { return ''; }
}
// {ok, status, data} — or {unavailable: true} when nothing answers under /api/ (no control plane here).
async function api(method, path, body) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { unavailable: true };
  }
  const json = (res.headers.get('content-type') || '').includes('application/json');
  if (!json) return [404, 405, 501, 502, 503, 504].includes(res.status) ? { unavailable: true } : { ok: false, status: res.status, data: {} };
  let data = {};
  try { data = await res.json(); } catch { /* empty body */ }
  return { ok: res.ok, status: res.status, data };
}
const apiError = (r) => (r.data && r.data.error) || { code: `http_${r.status}`, message: `The server answered ${r.status}.` };

async function setupAccount() {
  const me = await api('GET', '/me');
  apiMode = !me.unavailable;
  signedIn = apiMode && me.ok;
  $('acct-in').hidden = true; $('signin').hidden = true; $('acct-none').hidden = true;
  $('import-box').hidden = !apiMode || !me.ok;
  if (!apiMode) {
    $('acct-none').hidden = false;
    return;
  }
  if (me.ok) {
    $('acct-in').hidden = false;
    $('acct-name').textContent = me.data.name;
    await loadQuizzes();
    await loadGames();
  } else if (sessionStorage.getItem('ringside.publicOnly')) {
    $('acct-none').hidden = false;
    await loadQuizzes();
  } else {
    $('signin').hidden = false;
  }
}

$('signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const key = $('apikey').value.trim();
  if (!key) { $('signin-error').textContent = 'Enter your API key.'; return; }
  try { localStorage.setItem(API_KEY, key); } catch { /* private mode: this page only */ }
  $('apikey').value = '';
  const me = await api('GET', '/me');
  if (!me.ok) {
    forget(localStorage, API_KEY);
    $('signin-error').textContent = me.status === 401 ? 'That API key was not accepted.' : apiError(me).message;
    return;
  }
  $('signin-error').textContent = '';
  setupAccount();
});
$('skip-signin').addEventListener('click', () => {
  sessionStorage.setItem('ringside.publicOnly', '1');
  setupAccount();
});
$('signout').addEventListener('click', () => {
  forget(localStorage, API_KEY);
  sessionStorage.removeItem('ringside.publicOnly');
  $('quiz-list').hidden = true; $('quiz-manual').hidden = false; $('history').hidden = true;
  setupAccount();
});

let quizzes = [];
async function loadQuizzes(select) {
  const r = await api('GET', '/quizzes');
  if (!r.ok || !Array.isArray(r.data.quizzes)) return;
  quizzes = r.data.quizzes;
  const list = $('quiz-list');
  list.innerHTML = quizzes.map((q, i) => `<label class="quiz-item"><input type="radio" name="quiz" value="${esc(q.id)}"${(select ? q.id === select : i === 0) ? ' checked' : ''}>
    <span class="qi-title">${esc(q.title)}</span>
    <span class="qi-meta">${q.questionCount} questions · ${q.mine ? 'yours' : `by ${esc(q.owner || 'someone')}`} · ${q.visibility}</span></label>`).join('');
  list.hidden = quizzes.length === 0;
  $('quiz-manual').hidden = quizzes.length > 0;
}

async function loadGames() {
  const r = await api('GET', '/games?limit=5');
  if (!r.ok || !Array.isArray(r.data.games) || r.data.games.length === 0) return;
  $('history').hidden = false;
  $('games').innerHTML = r.data.games.map((g) => `<li><b>${esc(g.title)}</b> · ${new Date(g.startedAt).toLocaleString()} · ${g.playerCount} players
    <a href="/api/games/${encodeURIComponent(g.roomId)}/results.csv" data-csv download>results (CSV)</a></li>`).join('');
}

// CSV links need the API key, which a plain link does not send: fetch with it, then save the file.
document.addEventListener('click', async (ev) => {
  const a = ev.target.closest('a[data-csv]');
  if (!a) return;
  ev.preventDefault();
  const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
  try {
    const res = await fetch(a.getAttribute('href'), { headers });
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const save = document.createElement('a');
    save.href = url;
    save.download = `ringside-${a.getAttribute('href').split('/')[3]}.csv`;
    document.body.appendChild(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    a.insertAdjacentHTML('afterend', `<span class="error" role="alert"> Could not download the results: ${esc(e.message)}.</span>`);
  }
});

$('import-btn').addEventListener('click', async () => {
  const out = $('import-result');
  const file = $('import-file').files[0];
  if (!file) { out.innerHTML = '<p class="error">Choose a quiz file first.</p>'; return; }
  let quiz;
  try { quiz = JSON.parse(await file.text()); } catch (e) {
    out.innerHTML = `<p class="error">${esc(file.name)} is not valid JSON: ${esc(e.message)}</p>`;
    return;
  }
  const r = await api('POST', '/quizzes', { visibility: $('import-public').checked ? 'public' : 'private', quiz });
  if (r.unavailable) { out.innerHTML = '<p class="error">Importing needs the control-plane API, which is not running here.</p>'; return; }
  if (r.ok) {
    out.innerHTML = `<p class="okmsg">Imported “${esc(r.data.title || quiz.title)}”.</p>`;
    await loadQuizzes(r.data.id || quiz.id);
    return;
  }
  const e = apiError(r);
  if (e.code === 'quiz_id_taken') {
    out.innerHTML = `<p class="error">A quiz with the id “${esc(quiz.id)}” already exists. Change <code>"id"</code> in the file and import it again.</p>`;
    return;
  }
  // "questions[2].correct" → question 3, field "correct"; the message without the repeated path.
  const where = !e.field ? '' : (/^questions\[(\d+)\]\.(\w+)/.test(e.field)
    ? e.field.replace(/^questions\[(\d+)\]\.(\w+).*/, (_, i, f) => `Question ${+i + 1}, field “${f}”`)
    : `Field “${e.field}”`);
  const msg = e.field && e.message.startsWith(`${e.field}: `) ? e.message.slice(e.field.length + 2) : e.message;
  out.innerHTML = `<p class="error">${e.code === 'invalid_quiz' ? 'This quiz file has a problem. ' : ''}${esc(where)}${where ? ': ' : ''}${esc(msg)}`
    + `${e.field ? ` <code>${esc(e.field)}</code>` : ''}</p>`;
});

// ── creating the game ─────────────────────────────────────────────────────────────────────────────────
function publicBase() {
  try { return localStorage.getItem(BASE_KEY) || location.origin; } catch { return location.origin; }
}
$('base').value = publicBase();

$('create').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const errEl = $('create-error');
  errEl.textContent = '';
  const checked = document.querySelector('input[name="quiz"]:checked');
  const quizId = (!$('quiz-list').hidden && checked ? checked.value : $('quiz-id').value).trim();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(quizId)) { errEl.textContent = 'Pick a quiz (an id of letters, digits, - and _).'; return; }
  const settings = { revealPauseMs: 1000 * Math.max(2, Math.min(60, +$('gap').value || 6)), lateJoin: $('late').checked };
  if ($('secs').value) {
    const s = +$('secs').value;
    if (!(s >= 1 && s <= 300)) { errEl.textContent = 'Seconds per question: 1 to 300.'; $('secs').focus(); return; }
    settings.timePerQMs = s * 1000;
  }
  if ($('maxp').value) settings.maxPlayers = Math.max(1, +$('maxp').value);
  let base = $('base').value.trim().replace(/\/+$/, '');
  if (base && !/^https?:\/\/[^/]+/.test(base)) { errEl.textContent = 'The join address starts with http:// or https://.'; $('base').focus(); return; }
  if (!base) base = location.origin;
  try { if (base === location.origin) localStorage.removeItem(BASE_KEY); else localStorage.setItem(BASE_KEY, base); } catch { /* ignore */ }

  const body = { quizId, hostName: $('acct-name').textContent || 'Host', settings };
  $('create-btn').disabled = true;
  try {
    let created;
    // Without an account (or without the API), room:create over the socket: public quizzes only.
    const viaApi = signedIn ? await api('POST', '/rooms', body) : { unavailable: true };
    if (viaApi.unavailable) {
      created = await rs.request('room:create', body);
    } else if (!viaApi.ok) {
      throw apiError(viaApi);
    } else {
      created = viaApi.data;
    }
    // An operator's configured share base (--share-base, or the control plane's) beats the page's own origin.
    if (base === location.origin && created.shareUrl) {
      try {
        const s = new URL(created.shareUrl);
        if (!/^(localhost|127\.|\[::1\])/.test(s.hostname)) base = s.origin;
      } catch { /* not a URL: keep ours */ }
    }
    begin(created, base);
    if (!viaApi.unavailable) await rs.resume(); // take the host session on this socket
  } catch (e) {
    // The control plane's own codes (invalid_settings, …) come with a message meant for people.
    errEl.textContent = !hasWords(e.code) && e.message ? e.message : forHost(e);
  } finally {
    $('create-btn').disabled = false;
  }
});

function begin(created, base) {
  rs.session = { gameCode: created.gameCode, playerId: 'host', sessionToken: created.hostToken };
  rs.lastSeq = 0;
  m = {
    session: rs.session, code: created.gameCode, roomId: created.roomId, quiz: created.quizMeta, base,
    viaApi: signedIn, view: 'lobby', players: [], totalCount: 0, q: null, paused: false, answered: 0,
    reveal: null, leaderboard: null, final: null,
  };
  persist();
  render();
}

// ── events ─────────────────────────────────────────────────────────────────────────────────────────────
function onEvent(env) {
  if (!m) return;
  const d = env.data || {};
  switch (env.event) {
    case 'room:player:joined':
      for (const p of d.players || []) {
        if (!m.players.some((x) => x.id === p.id)) m.players.push(p);
      }
      if (m.players.length > MAX_NAMES) m.players.splice(0, m.players.length - MAX_NAMES);
      m.totalCount = d.totalCount;
      break;
    case 'room:player:left':
      m.players = m.players.filter((p) => p.id !== d.playerId);
      m.totalCount = d.totalCount;
      if (m.away) delete m.away[d.playerId];
      break;
    case 'room:player:presence': // docs/protocol.md: dropped players keep their place; the question does not wait
      m.away = m.away || {};
      for (const id of d.away || []) m.away[id] = true;
      for (const id of d.back || []) delete m.away[id];
      m.awayCount = d.awayCount; m.totalCount = d.totalCount;
      break;
    case 'game:countdown':
      m.view = 'countdown'; m.startsAt = d.startsAt; break;
    case 'game:question:show':
      m.view = 'question'; m.q = d; m.paused = false; m.answered = 0; m.reveal = null; m.leaderboard = null;
      waitForShowAt();
      break;
    case 'game:answer:progress':
      if (m.q && d.qIndex === m.q.qIndex) { m.answered = d.answeredCount; m.totalCount = d.totalCount; } break;
    case 'game:paused':
      m.paused = true; m.remainingMs = d.remainingMs; break;
    case 'game:resumed': case 'game:time:extended':
      m.paused = false; if (m.q) m.q.endsAt = d.endsAt; break;
    case 'game:question:reveal':
      m.view = 'reveal'; m.reveal = d; m.answered = d.answeredCount; m.totalCount = d.totalCount; break;
    case 'game:leaderboard':
      m.leaderboard = d.rankings; m.totalCount = d.totalPlayers; break;
    case 'game:end':
      m.view = 'ended'; m.final = d.finalRankings; m.totalCount = d.totalPlayers; m.roomId = d.roomId || m.roomId; break;
    case 'reconnect:state':
      applySnapshot(d); break;
    default:
      return;
  }
  persist();
  render();
}

// Fair start (docs/protocol.md §7.3): a question arrives before its showAt; until then the big screen counts down
// to it and draws it at showAt by the server clock, when every phone draws it too.
function waitForShowAt() {
  const q = m.q;
  if (!q || !q.showAt || rs.msUntil(q.showAt) <= 0) return;
  m.view = 'countdown'; m.startsAt = q.showAt;
  setTimeout(() => {
    if (m && m.q === q && m.view === 'countdown') { m.view = 'question'; persist(); render(); }
  }, rs.msUntil(q.showAt));
}

function applySnapshot(s) {
  m.totalCount = s.totalPlayers;
  if (s.leaderboard && s.leaderboard.length) m.leaderboard = s.leaderboard;
  const sameQ = m.q && s.currentQ && m.q.qIndex === s.currentQ.qIndex;
  switch (s.state) {
    case 'LOBBY': m.view = 'lobby'; break;
    case 'STARTING': m.view = 'countdown'; break;
    case 'ACTIVE':
      if (!sameQ) m.answered = 0;
      m.q = s.currentQ; m.view = 'question'; m.paused = s.paused;
      if (s.paused) m.remainingMs = s.timeRemainingMs;
      waitForShowAt();
      break;
    case 'REVEAL':
      // The snapshot carries the revealed question and its reveal: show them, not a blank wait.
      if (s.reveal && s.currentQ) {
        m.q = s.currentQ; m.reveal = s.reveal; m.paused = false; m.view = 'reveal';
        m.answered = s.reveal.answeredCount; m.totalCount = s.reveal.totalCount;
      } else if (!(m.view === 'reveal' && sameQ)) {
        m.view = 'between';
      }
      break;
    case 'ENDED': m.view = 'ended'; m.final = s.leaderboard; break;
  }
}

function onResumed() {
  persist();
  render();
  if (m && m.view === 'lobby') refreshRoster();
}

// The lobby's names from the server (room:players): after a reload the stored list may be stale or gone
// (a snapshot replaces the joins it missed), so the host asks for the room's players once it is back.
// Names already shown keep their place; the first MAX_NAMES are enough (the count is exact beyond that).
async function refreshRoster() {
  let page;
  try {
    page = await rs.request('room:players', { gameCode: m.code, offset: 0, count: MAX_NAMES });
  } catch {
    return; // the list stays as it was; joins keep arriving
  }
  if (!m || m.view !== 'lobby') return;
  const server = new Map(page.players.map((p) => [p.id, p]));
  const kept = m.players.filter((p) => server.has(p.id));
  const known = new Set(kept.map((p) => p.id));
  m.players = kept.concat(page.players.filter((p) => !known.has(p.id)));
  m.totalCount = page.totalCount;
  persist();
  render();
}

function onResumeFailed(e) {
  const gone = e.code === 'room_not_found';
  forget(localStorage, KEY);
  m = null;
  render();
  $('create-error').textContent = gone ? 'Your last game has ended.' : forHost(e);
  setupAccount();
}

function onLine(online, code, final) {
  const c = $('conn');
  if (online) { c.hidden = true; return; }
  c.hidden = false;
  if (final) { c.textContent = closeWords(code); return; }
  c.textContent = m ? 'Connection lost — reconnecting… the game goes on.' : 'Connecting to the game server…';
}

// ── controls ──────────────────────────────────────────────────────────────────────────────────────────
async function act(event, extra = {}, errEl = 'q-error') {
  $(errEl).textContent = '';
  try {
    await rs.request(event, { gameCode: m.code, ...extra });
  } catch (e) {
    $(errEl).textContent = forHost(e);
  }
}
$('start').addEventListener('click', () => act('game:start', {}, 'lobby-error'));
$('pause').addEventListener('click', () => act('host:pause'));
$('resume').addEventListener('click', () => act('host:resume'));
$('extend').addEventListener('click', () => act('host:extend:time', { addSeconds: 10 }));
$('skip').addEventListener('click', () => act('host:skip:question', { reason: 'host skipped' }));
$('players').addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-kick]');
  if (b) act('room:kick', { targetPlayerId: b.dataset.kick }, 'lobby-error');
});
$('base-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const base = $('base2').value.trim().replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(base)) { $('base2').setAttribute('aria-invalid', 'true'); return; }
  $('base2').removeAttribute('aria-invalid');
  try { localStorage.setItem(BASE_KEY, base); } catch { /* ignore */ }
  m.base = base;
  persist();
  $('base2').blur();
  render();
});
$('new-game').addEventListener('click', () => {
  forget(localStorage, KEY);
  rs.session = null;
  m = null;
  location.href = 'host.html';
});
$('fs').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else if (document.documentElement.requestFullscreen) document.documentElement.requestFullscreen().catch(() => {});
});
document.addEventListener('fullscreenchange', () => {
  $('fs').setAttribute('aria-pressed', String(!!document.fullscreenElement));
  $('fs').textContent = document.fullscreenElement ? 'Exit fullscreen' : 'Fullscreen';
});
// Keys for a clicker or a keyboard at the lectern: P pause/resume, S skip, F fullscreen.
document.addEventListener('keydown', (ev) => {
  if (!m || ev.target.closest('input, textarea, select') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.toLowerCase();
  if (k === 'f') $('fs').click();
  if (m.view === 'question' && k === 'p') (m.paused ? $('resume') : $('pause')).click();
  if (m.view === 'question' && k === 's') $('skip').click();
});

// ── rendering ─────────────────────────────────────────────────────────────────────────────────────────
function joinUrl() {
  return `${m.base || publicBase()}/play.html?code=${m.code}`;
}

function render() {
  $('h-title').textContent = m && m.quiz ? m.quiz.title : '';
  $('h-pin').hidden = !m || m.view === 'lobby';
  if (!m) { show('s-setup'); return; }
  $('h-pin').textContent = `PIN ${m.code}`;
  switch (m.view) {
    case 'lobby': return renderLobby();
    case 'countdown': case 'between':
      $('cd-title').textContent = m.quiz ? m.quiz.title : '';
      $('s-countdown').querySelector('h1').textContent = m.view === 'between' ? 'Next question coming up…'
        : m.q && m.q.showAt === m.startsAt && m.q.qIndex > 0 ? 'Next question in…' : 'Get ready!';
      if (m.view === 'between') $('cd-num').textContent = '';
      tick();
      return show('s-countdown');
    case 'question': return renderQuestion();
    case 'reveal': return renderReveal();
    case 'ended': return renderEnd();
  }
}

let qrFor = '';
function renderLobby() {
  const url = joinUrl();
  const u = new URL(url);
  $('join-host').textContent = `${u.host}${u.pathname}`;
  $('join-pin').textContent = m.code;
  $('join-url').textContent = url;
  if (qrFor !== url) { $('qr').innerHTML = qrSvg(url, `QR code: ${url}`); qrFor = url; }
  const loopback = /^(localhost|127\.|\[::1\])/.test(u.hostname);
  $('join-warn').hidden = !loopback;
  $('join-warn').textContent = loopback ? 'Phones cannot open this address: change it below to this computer’s network address.' : '';
  if (document.activeElement !== $('base2')) $('base2').value = m.base || publicBase();
  $('p-count').textContent = m.totalCount;
  $('p-count-word').textContent = m.totalCount === 1 ? 'player' : 'players';
  $('p-empty').hidden = m.totalCount > 0;
  // Only new names are added (and pop in); the ones already there stay put.
  const shown = m.players.slice(-120);
  const list = $('players');
  const want = new Set(shown.map((p) => p.id));
  for (const li of [...list.children]) if (!want.has(li.dataset.id)) li.remove();
  const have = new Set([...list.children].map((li) => li.dataset.id));
  for (const p of shown) {
    if (have.has(p.id)) continue;
    const li = document.createElement('li');
    li.className = 'chip';
    li.dataset.id = p.id;
    li.innerHTML = `<span class="dot" style="background:${avatarColor(p.id)}" aria-hidden="true">${esc(p.name.slice(0, 1).toUpperCase())}</span><span class="chip-name">${esc(p.name)}</span>`
      + `<button type="button" class="kick" data-kick="${esc(p.id)}" aria-label="Remove ${esc(p.name)}" title="Remove ${esc(p.name)}">×</button>`;
    list.appendChild(li);
  }
  for (const li of list.children) li.classList.toggle('away', !!(m.away && m.away[li.dataset.id]));
  const more = m.totalCount - shown.length;
  $('p-more').textContent = (more > 0 ? `and ${fmt(more)} more` : '') + (m.awayCount > 0 ? ` (${fmt(m.awayCount)} away)` : '');
  $('start').disabled = m.totalCount === 0;
  show('s-lobby');
}

function tiles(q) {
  return q.answers.map((a, i) => `<div class="tile c${i}"><span class="tile-shape">${shapeSvg(i)}<span class="sr">${shapeName(i)}:</span></span><span class="tile-text">${esc(a)}</span></div>`).join('');
}

function renderQuestion() {
  const q = m.q;
  $('q-num').textContent = `Question ${q.qIndex + 1} of ${q.totalQuestions}`;
  $('q-text').textContent = q.question;
  if ($('q-tiles').dataset.q !== String(q.qIndex)) {
    $('q-tiles').dataset.q = q.qIndex;
    $('q-tiles').className = `tiles host-tiles n${q.answers.length}`;
    $('q-tiles').innerHTML = tiles(q);
  }
  const img = $('q-img');
  if (q.imageUrl && /^https?:\/\//.test(q.imageUrl)) {
    if (img.getAttribute('src') !== q.imageUrl) {
      img.onerror = () => { img.hidden = true; }; // unreachable image: the question stands without it
      img.src = q.imageUrl;
    }
    img.hidden = false;
  } else {
    img.hidden = true;
    img.removeAttribute('src');
  }
  $('q-answered').textContent = m.answered;
  $('q-answers').textContent = `${m.answered} of ${m.totalCount} answered` + (m.awayCount > 0 ? `, ${fmt(m.awayCount)} away` : '');
  $('pause').hidden = m.paused;
  $('resume').hidden = !m.paused;
  $('extend').disabled = m.paused;
  $('paused').hidden = !m.paused;
  $('s-question').classList.toggle('is-paused', m.paused);
  tick();
  show('s-question');
}

function renderReveal() {
  const r = m.reveal, q = m.q;
  $('r-num').textContent = q ? `Question ${q.qIndex + 1} of ${q.totalQuestions}` : '';
  $('r-count').textContent = `${r.answeredCount} of ${r.totalCount} answered${r.skipped ? ' · skipped' : ''}`;
  $('r-q').textContent = q ? q.question : '';
  const answers = q ? q.answers : r.distribution.map((_, i) => `Option ${i + 1}`);
  $('r-correct').innerHTML = `<span class="tick" aria-hidden="true">✓</span> ${esc(answers[r.correctIndex])}`;
  const max = Math.max(1, ...r.distribution);
  $('r-bars').innerHTML = answers.map((a, i) => {
    const n = r.distribution[i] || 0;
    return `<div class="barrow ${i === r.correctIndex ? 'right' : 'dim'}"><span class="tile-shape c${i}">${shapeSvg(i)}</span>`
      + `<span class="barlabel">${esc(a)}${i === r.correctIndex ? ' <span class="sr">(correct)</span>' : ''}</span>`
      + `<span class="bartrack"><span class="bar c${i}" style="width:${(100 * n) / max}%"></span></span><span class="barnum">${n}</span></div>`;
  }).join('');
  $('r-expl').textContent = r.explanationText || '';
  const board = m.leaderboard || [];
  $('r-board-panel').hidden = board.length === 0;
  $('r-board').innerHTML = board.slice(0, 5).map((e) => `<li><span class="rank">${e.rank}</span><span class="bname">${esc(e.name)}</span>`
    + `<span class="bscore">${fmt(e.score)}</span><span class="bdelta">${e.delta > 0 ? `+${fmt(e.delta)}` : ''}${e.streak >= 3 ? ` · ${e.streak} in a row` : ''}</span></li>`).join('');
  show('s-reveal');
}

function renderEnd() {
  const f = m.final || [];
  $('end-title').textContent = m.quiz ? m.quiz.title : '';
  $('end-podium').innerHTML = podium(f);
  $('end-rest').innerHTML = f.slice(3, 10).map((e) => `<li><span class="rank">${e.rank}</span><span class="bname">${esc(e.name)}</span><span class="bscore">${fmt(e.score)}</span></li>`).join('');
  $('end-count').textContent = `${fmt(m.totalCount)} player${m.totalCount === 1 ? '' : 's'} took part.`;
  const csv = $('csv');
  csv.hidden = !(m.viaApi && m.roomId);
  if (m.roomId) csv.href = `/api/games/${encodeURIComponent(m.roomId)}/results.csv`;
  show('s-end');
}

function tick() {
  if (!m) return;
  if (m.view === 'countdown' && m.q && m.q.showAt === m.startsAt && rs.msUntil(m.startsAt) <= 0) {
    m.view = 'question'; // its showAt passed (a restored page): draw it
    render();
    return;
  }
  if (m.view === 'countdown' && m.startsAt) {
    const s = Math.ceil(rs.msUntil(m.startsAt) / 1000);
    $('cd-num').textContent = s > 0 ? s : 'Go!';
  }
  if (m.view === 'question' && m.q) {
    const left = m.paused ? m.remainingMs : rs.msUntil(m.q.endsAt);
    const secs = Math.ceil(left / 1000);
    $('q-timer').textContent = secs;
    $('clock').setAttribute('aria-label', m.paused ? `paused, ${secs} seconds left` : `${secs} seconds left`);
    $('clock').style.setProperty('--p', `${Math.max(0, Math.min(1, left / m.q.timeLimitMs)) * 360}deg`);
    $('clock').classList.toggle('low', !m.paused && secs <= 5);
  }
}
setInterval(tick, 250);

// ── start ─────────────────────────────────────────────────────────────────────────────────────────────
const saved = loadSaved(localStorage, KEY);
if (saved && saved.m && saved.m.session) {
  m = saved.m;
  rs.session = m.session;
  rs.lastSeq = saved.lastSeq || 0;
}
render();
rs.start();
if (!m) setupAccount();
