//! A string that never shows itself in `Debug`, `Display` or serialised diagnostics.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// API tokens and consumer credentials. Only [`SecretString::expose`] reveals the value, and only the
/// mapping calls it, to write the value into the object the gateway reads.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = SecretString::new("sk-very-secret");
        assert!(!format!("{secret:?}").contains("sk-very-secret"));
        assert!(!format!("{secret}").contains("sk-very-secret"));
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
