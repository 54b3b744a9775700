// The player page: join by PIN or link, answer, see each reveal, the final podium. The whole view is one
// model, kept in sessionStorage with the last room seq, so a reload, a phone lock or a network drop resumes
// with reconnect:attempt (events since that seq are replayed; a snapshot replaces them when they are gone).
// A copy in localStorage survives a closed tab: the join form then offers "Continue as …" (not automatic,
// so a second tab in the same browser can still join as someone else).
import { GameClient, loadSaved, save, forget, answerHash, shapeSvg, shapeName, $, esc, ordinal, fmt, show, avatarColor, podium, closeWords } from './game.js';
import { forPlayer } from './words.js';

const KEY = 'ringside.player';
const PIN = /^[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}$/;

let m = null; // the model; null before joining
const rs = new GameClient({ onEvent, onLine, onResumed, onResumeFailed });

function persist() {
  if (!m || !m.code) return;
  save(sessionStorage, KEY, { m, lastSeq: rs.lastSeq });
  save(localStorage, KEY, { m, lastSeq: rs.lastSeq });
}

// ── joining ───────────────────────────────────────────────────────────────────────────────────────────
$('join-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const code = $('code').value.trim().toUpperCase();
  const name = $('name').value.trim();
  const err = (msg, field) => {
    $('join-error').textContent = msg;
    if (field) { $(field).setAttribute('aria-invalid', 'true'); $(field).focus(); }
  };
  for (const f of ['code', 'name']) $(f).removeAttribute('aria-invalid');
  $('join-error').textContent = '';
  if (!PIN.test(code)) return err('The PIN is 6 letters and digits, for example K7QP2M.', 'code');
  if (!name) return err('Enter a nickname.', 'name');
  $('join-btn').disabled = true;
  $('join-btn').textContent = 'Joining…';
  try {
    const r = await rs.request('room:join', { gameCode: code, playerName: name, avatarId: 0 });
    m = {
      code: r.gameCode, playerId: r.playerId, name, answerSecret: r.answerSecret,
      quiz: r.quizMeta, totalCount: r.totalCount, view: r.state === 'LOBBY' ? 'lobby' : 'wait',
      q: null, pick: null, pickState: null, reveal: null, result: null, paused: false,
      score: 0, streak: 0, rank: 0, totalPlayers: r.totalCount, final: null,
    };
    rs.session = { gameCode: r.gameCode, playerId: r.playerId, sessionToken: r.sessionToken };
    m.session = rs.session;
    persist();
    render();
  } catch (e) {
    const field = ['name_taken', 'bad_name'].includes(e.code) ? 'name'
      : (['room_not_found', 'room_full', 'room_locked', 'bad_payload'].includes(e.code) ? 'code' : null);
    err(forPlayer(e), field);
  } finally {
    $('join-btn').disabled = false;
    $('join-btn').textContent = 'Enter';
  }
});

// The finished game stays in storage (a reload shows the results again) until the player moves on.
$('again').addEventListener('click', () => { forget(sessionStorage, KEY); forget(localStorage, KEY); });

$('leave').addEventListener('click', async () => {
  try { await rs.request('room:leave', { gameCode: m.code }); } catch { /* leaving anyway */ }
  end('out', 'You left the game', 'Thanks for playing.');
});

// Final: kicked, left, or the game is gone. Nothing is kept.
function end(view, title, text) {
  rs.session = null;
  rs.stopped = true;
  forget(sessionStorage, KEY);
  forget(localStorage, KEY);
  m = { view, title, text };
  render();
}

// ── events ─────────────────────────────────────────────────────────────────────────────────────────────
function onEvent(env) {
  if (!m || !m.code) {
    return;
  }
  const d = env.data || {};
  switch (env.event) {
    case 'room:player:joined': case 'room:player:left':
      m.totalCount = d.totalCount;
      if (env.event === 'room:player:left' && d.playerId === m.playerId) {
        return d.reason === 'kick' ? end('out', 'Removed from the game', forPlayer('kicked')) : end('out', 'You left the game', 'Thanks for playing.');
      }
      break;
    case 'game:countdown':
      m.view = 'countdown'; m.startsAt = d.startsAt; break;
    case 'game:question:show':
      m.view = 'question'; m.q = d; m.paused = false; m.pick = null; m.pickState = null; m.reveal = null; m.result = null; m.note = '';
      waitForShowAt();
      break;
    case 'game:paused':
      if (m.q) { m.paused = true; m.remainingMs = d.remainingMs; } break;
    case 'game:resumed': case 'game:time:extended':
      if (m.q) { m.paused = false; m.q.endsAt = d.endsAt; } break;
    case 'game:question:reveal':
      m.view = 'reveal'; m.reveal = d; break;
    case 'game:answer:result':
      m.result = d; m.score = d.total; m.streak = d.streak; m.rank = d.rank; m.totalPlayers = d.totalPlayers;
      if (d.answerIdx !== undefined && m.pick === null) m.pick = d.answerIdx;
      break;
    case 'game:leaderboard':
      m.leaderboard = d.rankings; m.totalPlayers = d.totalPlayers; break;
    case 'game:end':
      m.view = 'ended'; m.final = d.finalRankings; m.totalPlayers = d.totalPlayers; break;
    case 'reconnect:state':
      applySnapshot(d); break;
    case 'error':
      if (env.rid === undefined && d.code === 'kicked') return end('out', 'Removed from the game', forPlayer('kicked'));
      return;
    default:
      return;
  }
  persist();
  render();
}

// Fair start (docs/protocol.md §7.3): a question arrives before its showAt; until then the page counts down to it
// (the countdown screen) and draws it at showAt by the server clock — the same instant on every phone.
function waitForShowAt() {
  const q = m.q;
  if (!q || !q.showAt || rs.msUntil(q.showAt) <= 0) return;
  m.view = 'countdown'; m.startsAt = q.showAt;
  setTimeout(() => {
    if (m && m.q === q && m.view === 'countdown') { m.view = 'question'; persist(); render(); }
  }, rs.msUntil(q.showAt));
}

function applySnapshot(s) {
  m.totalCount = s.totalPlayers; m.totalPlayers = s.totalPlayers;
  m.score = s.score; m.streak = s.streak; if (s.rank) m.rank = s.rank;
  m.leaderboard = s.leaderboard;
  const sameQ = m.q && s.currentQ && m.q.qIndex === s.currentQ.qIndex;
  switch (s.state) {
    case 'LOBBY': m.view = 'lobby'; break;
    case 'STARTING': m.view = 'countdown'; break;
    case 'ACTIVE':
      if (!sameQ) { m.pick = null; m.pickState = null; m.result = null; m.reveal = null; }
      m.q = s.currentQ; m.view = 'question'; m.paused = s.paused;
      if (s.paused) m.remainingMs = s.timeRemainingMs;
      if (s.answered && m.pickState !== 'sent') m.pickState = 'sent';
      waitForShowAt();
      break;
    case 'REVEAL':
      // The snapshot carries the revealed question, its reveal and this player's own result.
      if (s.reveal && s.currentQ) {
        if (!sameQ) { m.pick = null; m.pickState = null; }
        m.q = s.currentQ; m.reveal = s.reveal; m.paused = false; m.view = 'reveal';
        if (s.result) {
          m.result = s.result;
          if (s.result.answerIdx !== undefined) { m.pick = s.result.answerIdx; m.pickState = 'sent'; }
        }
      } else if (!(m.view === 'reveal' && sameQ)) {
        m.view = 'wait';
      }
      break;
    case 'ENDED': m.view = 'ended'; m.final = s.leaderboard; break;
  }
}

function onResumed(reply) {
  // The replayed events (or the snapshot) went through onEvent already; this just redraws.
  persist();
  render();
  void reply;
}

function onResumeFailed(e) {
  if (e.code === 'kicked') return end('out', 'Removed from the game', forPlayer('kicked'));
  if (e.code === 'room_not_found') return end('out', 'This game is over', 'The game has ended and its results are gone. Join a new one with its PIN.');
  end('out', 'Could not rejoin', forPlayer(e));
}

function onLine(online, code, final) {
  const c = $('conn');
  if (online || rs.stopped) { c.hidden = true; return; } // stopped: the page already says why (kicked, left, over)
  if (!m || !m.code) { c.hidden = false; c.textContent = 'Connecting to the game server…'; return; }
  if (code === 4003) return end('out', 'Removed from the game', forPlayer('kicked'));
  c.hidden = false;
  c.textContent = final ? closeWords(code) : 'Connection lost — reconnecting… your score is safe.';
}

// ── answering ─────────────────────────────────────────────────────────────────────────────────────────
async function choose(i) {
  if (!m.q || m.pick !== null || m.paused || m.view !== 'question') return;
  const q = m.q;
  m.pick = i; m.pickState = 'sending'; m.note = '';
  render();
  try {
    const hash = await answerHash(m.answerSecret, m.code, m.playerId, q.qIndex, i);
    await rs.request('game:answer:submit', { gameCode: m.code, qIndex: q.qIndex, answerIdx: i, clientTime: Date.now(), answerHash: hash });
    if (m.q === q) m.pickState = 'sent';
  } catch (e) {
    if (m.q !== q) return;
    if (e.code === 'already_answered') m.pickState = 'sent';
    else if (['late_answer', 'wrong_question', 'wrong_state'].includes(e.code)) { m.pickState = 'refused'; m.note = forPlayer(e); }
    else if (e.code === 'too_early') { m.pick = null; m.pickState = null; m.note = forPlayer(e); }
    else { m.pick = null; m.pickState = null; m.note = forPlayer(e); }
  }
  persist();
  render();
}

// ── rendering ─────────────────────────────────────────────────────────────────────────────────────────
function tile(text, i, extra = '') {
  return `<span class="tile-shape">${shapeSvg(i)}<span class="sr">${shapeName(i)}:</span></span><span class="tile-text">${esc(text)}</span>${extra}`;
}

function render() {
  if (!m || !m.code) {
    if (m && m.view === 'out') {
      $('out-title').textContent = m.title; $('out-text').textContent = m.text;
      $('who').textContent = ''; $('score').hidden = true;
      return show('s-out');
    }
    return show('s-join');
  }
  $('who').textContent = m.name;
  $('score').hidden = m.view === 'lobby';
  $('score').textContent = `${fmt(m.score)} pts`;
  const quiz = m.quiz ? m.quiz.title : '';
  switch (m.view) {
    case 'lobby':
      $('lobby-quiz').textContent = quiz;
      $('lobby-name').textContent = m.name;
      $('lobby-avatar').textContent = m.name.slice(0, 1).toUpperCase();
      $('lobby-avatar').style.background = avatarColor(m.playerId);
      $('lobby-count').textContent = `${m.totalCount} player${m.totalCount === 1 ? '' : 's'} in the game.`;
      return show('s-lobby');
    case 'wait':
      $('cd-quiz').textContent = quiz;
      $('cd-num').textContent = '';
      show('s-countdown');
      $('s-countdown').querySelector('h1').textContent = 'Next question coming up…';
      return;
    case 'countdown':
      $('cd-quiz').textContent = quiz;
      $('s-countdown').querySelector('h1').textContent = m.q && m.q.showAt === m.startsAt && m.q.qIndex > 0 ? 'Next question in…' : 'Get ready!';
      tick();
      return show('s-countdown');
    case 'question': return renderQuestion();
    case 'reveal': return renderReveal();
    case 'ended': return renderEnd();
  }
}

function renderQuestion() {
  const q = m.q;
  $('q-num').textContent = `Question ${q.qIndex + 1} of ${q.totalQuestions}`;
  $('q-text').textContent = q.question;
  const tiles = $('q-tiles');
  if (tiles.dataset.q !== String(q.qIndex) || tiles.children.length !== q.answers.length) {
    tiles.dataset.q = q.qIndex;
    tiles.className = `tiles n${q.answers.length}`;
    tiles.innerHTML = q.answers.map((a, i) => `<button type="button" class="tile c${i}" data-i="${i}">${tile(a, i, '<span class="badge">Your answer</span>')}</button>`).join('');
    tiles.querySelectorAll('button').forEach((b) => b.addEventListener('click', () => choose(+b.dataset.i)));
  }
  const locked = m.pick !== null || m.paused;
  tiles.querySelectorAll('button').forEach((b) => {
    const i = +b.dataset.i;
    b.disabled = locked;
    b.classList.toggle('picked', m.pick === i);
    b.classList.toggle('unpicked', m.pick !== null && m.pick !== i);
    b.setAttribute('aria-pressed', String(m.pick === i));
  });
  let state = '';
  if (m.paused) state = 'Paused by the host — hold on.';
  else if (m.pickState === 'sending') state = 'Sending your answer…';
  else if (m.pickState === 'sent') state = m.pick !== null ? `Answer locked in: ${q.answers[m.pick]}. Waiting for the others…` : 'Answer locked in. Waiting for the others…';
  else if (m.pickState === 'refused') state = m.note;
  else if (m.note) state = m.note;
  $('q-state').textContent = state;
  $('q-state').className = 'qstate' + (m.paused ? ' paused' : '') + (m.pickState === 'refused' || (m.note && m.pick === null) ? ' bad' : '');
  $('s-question').classList.toggle('is-paused', m.paused);
  tick();
  show('s-question');
}

function renderReveal() {
  const q = m.q, r = m.reveal;
  const correct = r.correctIndex;
  const res = m.result && m.result.qIndex === r.qIndex ? m.result : null;
  const picked = res && res.answerIdx !== undefined ? res.answerIdx : m.pick;
  let title, cls;
  if (picked === null || picked === undefined || m.pickState === 'refused') { title = "Time's up"; cls = 'none'; }
  else if (picked === correct) { title = '✓ Correct'; cls = 'good'; }
  else { title = '✗ Wrong'; cls = 'bad'; }
  $('verdict').className = `verdict ${cls}`;
  $('v-title').textContent = title;
  $('v-points').textContent = res ? `${res.points >= 0 ? '+' : '−'}${fmt(Math.abs(res.points))} points` : (cls === 'good' ? 'Counting points…' : '+0 points');
  $('r-tiles').className = `tiles revealed n${q ? q.answers.length : 4}`;
  $('r-tiles').innerHTML = (q ? q.answers : []).map((a, i) => {
    const tags = i === correct && i === picked ? '<span class="badge ok">Your answer ✓</span>'
      : (i === correct ? '<span class="badge ok">Correct answer</span>' : '') + (i === picked ? '<span class="badge">Your answer</span>' : '');
    return `<div class="tile c${i} ${i === correct ? 'right' : 'dim'} ${i === picked ? 'picked' : ''}">${tile(a, i, tags)}</div>`;
  }).join('');
  $('r-expl').textContent = r.explanationText || '';
  const stats = [['Total', `${fmt(m.score)}`]];
  if (m.rank) stats.push(['Rank', `${ordinal(m.rank)} of ${m.totalPlayers}`]);
  stats.push(['Streak', String(m.streak || 0)]);
  $('r-stats').innerHTML = stats.map(([k, v]) => `<div><dt>${k}</dt><dd>${esc(v)}</dd></div>`).join('');
  const last = q && q.qIndex + 1 >= q.totalQuestions;
  $('r-next').textContent = last ? 'That was the last question — final results coming up…' : 'Next question coming up…';
  show('s-reveal');
}

function renderEnd() {
  const f = m.final || [];
  $('end-quiz').textContent = m.quiz ? m.quiz.title : '';
  $('end-podium').innerHTML = podium(f, m.playerId);
  const mine = f.find((r) => r.id === m.playerId);
  const rank = mine ? mine.rank : m.rank;
  const score = mine ? mine.score : m.score;
  $('end-you').textContent = rank
    ? `You finished ${ordinal(rank)} of ${m.totalPlayers} with ${fmt(score)} points.`
    : `You scored ${fmt(score)} points.`;
  show('s-end');
}

// Timer and countdown, from the server clock.
function tick() {
  if (!m || !m.code) return;
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
    $('q-timer').textContent = m.paused ? '' : Math.ceil(left / 1000);
    $('q-timer').classList.toggle('paused', !!m.paused);
    $('q-timer').setAttribute('aria-label', m.paused ? 'paused' : `${Math.ceil(left / 1000)} seconds left`);
    $('q-bar').style.width = `${Math.max(0, Math.min(100, (100 * left) / m.q.timeLimitMs))}%`;
  }
}
setInterval(tick, 250);

// Keys 1–8 answer on a keyboard (tiles are buttons too: Tab + Enter works everywhere).
document.addEventListener('keydown', (ev) => {
  if (!m || m.view !== 'question' || ev.target.closest('input') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const i = '12345678'.indexOf(ev.key);
  if (i >= 0 && m.q && i < m.q.answers.length) choose(i);
});

// ── start ─────────────────────────────────────────────────────────────────────────────────────────────
function restore(s) {
  m = s.m;
  rs.session = m.session;
  rs.lastSeq = s.lastSeq || 0;
}
const saved = loadSaved(sessionStorage, KEY);
const kept = loadSaved(localStorage, KEY);
const urlCode = (new URLSearchParams(location.search).get('code') || '').toUpperCase();
const usable = (s) => s && s.m && s.m.code && s.m.session && (!urlCode || urlCode === s.m.code);
if (usable(saved)) {
  restore(saved);
} else {
  if (urlCode) { $('code').value = urlCode; $('name').focus(); } else $('code').focus();
  if (usable(kept) && kept.m.view !== 'ended') {
    $('resume-box').hidden = false;
    $('resume-name').textContent = kept.m.name;
    $('resume-name2').textContent = kept.m.name;
    $('resume-code').textContent = kept.m.code;
    $('resume-btn').addEventListener('click', () => {
      restore(kept);
      persist();
      render();
      if (rs.ready) rs.resume(); // else the connection resumes the session when it opens
    });
  }
}
render();
rs.start();
