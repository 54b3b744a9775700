// WebSocket close codes and what a client does after each. GENERATED from protocol/src/error.rs
// (`CloseCode`) by protocol/tests/protocol/close_codes.rs, which fails when this file differs: do not edit.
// reconnect: 'never' (final), 'now' (at once, any edge, last seq), 'backoff' (after a backoff).
export const CLOSE_CODES = {
  1000: { name: 'normal', reconnect: 'never' },
  1002: { name: 'protocol error', reconnect: 'never' },
  1007: { name: 'invalid payload', reconnect: 'never' },
  1008: { name: 'policy violation', reconnect: 'backoff' },
  1009: { name: 'message too big', reconnect: 'never' },
  1012: { name: 'service restart', reconnect: 'now' },
  4000: { name: 'idle timeout', reconnect: 'backoff' },
  4003: { name: 'kicked', reconnect: 'never' },
  4008: { name: 'slow consumer', reconnect: 'backoff' },
};

// Any other code (1005 no code, 1006 dropped without a close frame, a proxy's 1001/1011/1013…).
export function reconnectAdvice(code) {
  const c = CLOSE_CODES[code];
  return c ? c.reconnect : 'backoff';
}
