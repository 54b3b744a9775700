// Every error code of docs/protocol.md §4 in words a player or host can act on (webtest checks the table
// is complete against the doc). `forPlayer` and `forHost` differ where the advice differs.

const COMMON = {
  bad_frame: 'Your browser sent something the server could not read. Reload the page and try again.',
  unknown_event: 'This page is out of date. Reload it and try again.',
  bad_payload: 'Something in that form is missing or not allowed. Check it and try again.',
  too_large: 'That was too much to send at once.',
  unauthorized: 'This session is no longer valid.',
  not_host: 'Only the host can do that.',
  room_not_found: 'No game with that PIN is running. Check the PIN on the big screen.',
  quiz_not_found: 'That quiz does not exist. Pick another one.',
  room_full: 'This game is full.',
  room_locked: 'This game has already started and is not taking new players.',
  name_taken: 'Someone in this game already has that nickname. Pick another.',
  bad_name: 'Nicknames are 1 to 24 characters, with no special control characters.',
  wrong_state: 'That is not possible right now.',
  wrong_question: 'That question is over; your answer was not counted.',
  late_answer: 'Too late — time was up before your answer arrived.',
  too_early: 'Too early — the question was not on screen yet. Try again.',
  already_answered: 'You already answered this question; your first answer counts.',
  bad_hash: 'Your answer could not be verified. Reload the page to rejoin.',
  rate_limited: 'Slow down a little — too many taps at once.',
  kicked: 'The host removed you from this game.',
  overloaded: 'The game is very busy. Trying again in a moment…',
  unavailable: 'The game server is briefly unavailable. Trying again in a moment…',
  internal: 'Something went wrong on our side. Please try again.',
  // Not protocol codes: what the pages themselves detect.
  timeout: 'No answer from the server. Check your connection.',
  offline: 'You are offline. Reconnecting…',
};

const HOST = {
  ...COMMON,
  unauthorized: 'The host session was not accepted. Create a new game.',
  room_not_found: 'That game has ended or expired.',
  wrong_state: 'That control does not apply right now (for example, pausing between questions).',
  kicked: 'This session was removed from the game.',
  bad_payload: 'A setting is missing or out of range. Check the form.',
};

function pick(table, err) {
  const code = typeof err === 'string' ? err : err && err.code;
  const words = table[code] || COMMON[code];
  if (words) return words;
  return 'Something went wrong' + (code ? ` (${code})` : '') + '. Please try again.';
}

export const ERROR_CODES = Object.keys(COMMON);
export const hasWords = (code) => Object.prototype.hasOwnProperty.call(COMMON, code);
export const forPlayer = (err) => pick(COMMON, err);
export const forHost = (err) => pick(HOST, err);
