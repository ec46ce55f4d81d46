//! Lease ids and SSH usernames.

use paygress_core::{LeaseId, Username};

/// Parses the input as a lease id and as a username. Whatever parses must print back as
/// the input and survive a serde round trip; whatever fails must describe itself.
pub fn names(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut accepted = false;
    match text.parse::<LeaseId>() {
        Ok(id) => {
            accepted = true;
            assert_eq!(id.as_str(), text);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            );
            let json = serde_json::to_string(&id).expect("a lease id serializes");
            assert_eq!(serde_json::from_str::<LeaseId>(&json).ok(), Some(id));
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(serde_json::from_value::<LeaseId>(text.into()).is_err());
        }
    }
    match text.parse::<Username>() {
        Ok(user) => {
            accepted = true;
            assert_eq!(user.to_string(), text);
            assert!(!user.as_str().is_empty() && user.as_str().len() <= 32);
            assert!(!user.as_str().starts_with('-'));
            let json = serde_json::to_string(&user).expect("a username serializes");
            assert_eq!(serde_json::from_str::<Username>(&json).ok(), Some(user));
        }
        Err(e) => {
            // Messages quote the input cut to 64 characters (each at most 10 bytes once
            // escaped, `\u{10ffff}`): never the whole of a huge name.
            assert!(e.to_string().len() <= 1024, "error message is not bounded");
            assert!(serde_json::from_value::<Username>(text.into()).is_err());
        }
    }
    accepted
}
