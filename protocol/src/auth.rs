//! The answer HMAC (anti-cheat layer 2).
//!
//! At `room:join` the server gives each player session an `answerSecret` (32 random bytes, hex). Every
//! `game:answer:submit` carries `answerHash = hex(HMAC-SHA256(answerSecret, "gameCode:playerId:qIndex:answerIdx"))`
//! where the key is the secret's hex text as bytes. The edge verifies it, in constant time, before any
//! Redis call, so a replayed or tampered answer never reaches the game logic.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The message that is signed.
pub fn answer_message(game_code: &str, player_id: &str, q_index: u32, answer_idx: u32) -> String {
    format!("{game_code}:{player_id}:{q_index}:{answer_idx}")
}

/// Lower-case hex of the HMAC of an answer.
pub fn answer_hash(
    secret: &str,
    game_code: &str,
    player_id: &str,
    q_index: u32,
    answer_idx: u32,
) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(answer_message(game_code, player_id, q_index, answer_idx).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// True when `hash` (hex, any case) is the HMAC of this answer; compares in constant time.
pub fn verify_answer_hash(
    secret: &str,
    game_code: &str,
    player_id: &str,
    q_index: u32,
    answer_idx: u32,
    hash: &str,
) -> bool {
    let Ok(tag) = hex::decode(hash) else {
        return false;
    };
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(answer_message(game_code, player_id, q_index, answer_idx).as_bytes());
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_answer_verifies_and_a_changed_one_does_not() {
        let h = answer_hash("s3cret", "K7QP2M", "p1", 2, 1);
        assert_eq!(h.len(), 64);
        assert!(verify_answer_hash("s3cret", "K7QP2M", "p1", 2, 1, &h));
        assert!(verify_answer_hash(
            "s3cret",
            "K7QP2M",
            "p1",
            2,
            1,
            &h.to_uppercase()
        ));
        assert!(!verify_answer_hash("s3cret", "K7QP2M", "p1", 2, 2, &h));
        assert!(!verify_answer_hash("other", "K7QP2M", "p1", 2, 1, &h));
        assert!(!verify_answer_hash("s3cret", "K7QP2M", "p1", 2, 1, "zz"));
    }

    #[test]
    fn matches_the_rfc_4231_style_reference() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog")
        let mut mac = HmacSha256::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
