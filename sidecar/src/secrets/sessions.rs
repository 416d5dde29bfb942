//! Sign-ins to the secrets page: a random session id (the cookie) and a random CSRF token per
//! session, both compared in constant time; sessions expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// Who signed in: the author of the commits they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// A name and an email a git author line can carry (no `<`, `>` or newlines).
    pub fn new(name: &str, email: &str) -> Result<Identity, String> {
        let (name, email) = (name.trim(), email.trim());
        let clean =
            |s: &str| !s.is_empty() && s.len() <= 200 && !s.contains(['<', '>', '\n', '\r', '\0']);
        if !clean(name) {
            return Err("give your name (for the commit's author)".into());
        }
        if !clean(email) || !email.contains('@') {
            return Err("give your email address (for the commit's author)".into());
        }
        Ok(Identity {
            name: name.to_owned(),
            email: email.to_owned(),
        })
    }

    /// `Name <email>`, as `git commit --author` takes it.
    pub fn author(&self) -> String {
        format!("{} <{}>", self.name, self.email)
    }
}

#[derive(Debug)]
struct Session {
    identity: Identity,
    csrf: String,
    expires: Instant,
}

/// The live sessions.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    by_id: HashMap<String, Session>,
}

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Constant-time equality of two strings.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            by_id: HashMap::new(),
        }
    }

    /// A new session for `identity`: its id.
    pub fn start(&mut self, identity: Identity) -> Result<String, String> {
        let now = Instant::now();
        self.by_id.retain(|_, s| s.expires > now);
        let id = random_token()?;
        let csrf = random_token()?;
        self.by_id.insert(
            id.clone(),
            Session {
                identity,
                csrf,
                expires: now + self.ttl,
            },
        );
        Ok(id)
    }

    /// The identity and CSRF token of a live session.
    pub fn get(&self, id: &str) -> Option<(&Identity, &str)> {
        let now = Instant::now();
        self.by_id
            .iter()
            .find(|(k, s)| same(k, id) && s.expires > now)
            .map(|(_, s)| (&s.identity, s.csrf.as_str()))
    }

    pub fn end(&mut self, id: &str) {
        self.by_id.retain(|k, _| !same(k, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_carries_its_identity_and_csrf_token_until_it_ends_or_expires() {
        let mut sessions = Sessions::new(Duration::from_secs(60));
        let who = Identity::new("Ada Ops", "ada@example.com").expect("identity");
        let id = sessions.start(who.clone()).expect("session");
        let (identity, csrf) = sessions.get(&id).expect("live");
        assert_eq!(identity, &who);
        assert_eq!(csrf.len(), 64);
        assert!(sessions.get("nope").is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
        let mut short = Sessions::new(Duration::ZERO);
        let id = short.start(who).expect("session");
        assert!(short.get(&id).is_none(), "expired");
    }

    #[test]
    fn an_author_line_cannot_be_forged_through_the_form() {
        assert!(Identity::new("Eve <evil@x>", "e@x").is_err());
        assert!(Identity::new("Eve", "e@x>\nmore").is_err());
        assert!(Identity::new("", "e@x").is_err());
        assert!(Identity::new("Eve", "no-at-sign").is_err());
        assert_eq!(
            Identity::new(" Ada ", "ada@x ").expect("ok").author(),
            "Ada <ada@x>"
        );
    }
}
