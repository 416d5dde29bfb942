//! Comparing secrets without leaking where they differ: bearer tokens, webhook tokens and
//! webhook signatures all go through here.

use crate::config::Secret;
use sha2::{Digest, Sha256};

/// Equal, in time that does not depend on where the inputs differ (both are hashed first, so
/// not on their lengths either).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// True when `candidate` equals one of `accepted` (every one is compared).
pub fn matches_any(candidate: &str, accepted: &[Secret]) -> bool {
    position_of(candidate, accepted).is_some()
}

/// Which of `accepted` `candidate` is (the first, when listed twice), comparing with every one
/// of them in constant time.
pub fn position_of(candidate: &str, accepted: &[Secret]) -> Option<usize> {
    accepted.iter().enumerate().fold(None, |found, (i, t)| {
        let same = constant_time_eq(candidate.as_bytes(), t.expose().as_bytes());
        found.or(same.then_some(i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let accepted = vec![Secret::from("alpha"), Secret::from("beta")];
        assert!(matches_any("beta", &accepted));
        assert!(!matches_any("bet", &accepted));
        assert!(!matches_any("betaa", &accepted));
        assert!(!matches_any("", &accepted));
        assert_eq!(position_of("beta", &accepted), Some(1));
        assert_eq!(position_of("gamma", &accepted), None);
        assert!(constant_time_eq(b"x", b"x") && !constant_time_eq(b"x", b"y"));
    }
}
