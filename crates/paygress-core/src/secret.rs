//! Values that must never reach a log line: Cashu tokens and passwords.
//!
//! Both serialize as plain strings (they travel inside encrypted replies), but their
//! `Debug` and `Display` output is redacted, so `tracing` fields and `{:?}` are safe.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself. Call only where the value leaves the process on purpose
            /// (an encrypted reply, a request to the mint, a Kubernetes Secret).
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// Length in bytes (safe to log).
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the value is empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "(<redacted, {} bytes>)"), self.0.len())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

secret_string!(
    /// An encoded Cashu token (`cashuA…`/`cashuB…`). Bearer money: whoever holds it can spend it.
    CashuToken,
    "CashuToken"
);

secret_string!(
    /// A lease's SSH password.
    Password,
    "Password"
);

impl Password {
    /// A fresh random password: 20 characters from an unambiguous alphanumeric alphabet
    /// (about 113 bits of entropy).
    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        let s: String = (0..20)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let t = CashuToken::new("cashuBsecretstuff");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!format!("{t}").contains("secret"));
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn serializes_as_plain_string() {
        let t = CashuToken::new("cashuBabc");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"cashuBabc\"");
    }

    #[test]
    fn generated_passwords_differ_and_are_long() {
        let a = Password::generate();
        let b = Password::generate();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
