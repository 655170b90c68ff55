//! Reading one key: its value trimmed, or the table's default, checked against its
//! kind; every error names the key.

use super::keys::{self, Kind};
use crate::error::Error;

/// How the host answers for one key: `Ok(None)` when unset, `Err(message)` when its
/// config store fails.
pub(super) type Get<'a> = &'a dyn Fn(&str) -> Result<Option<String>, String>;

/// Reads one key at a time, as [`KEYS`](super::keys::KEYS) describes it. Not generic
/// over the host's getter: its readers are compiled once for every caller.
pub(super) struct Reader<'a> {
    pub(super) get: Get<'a>,
}

impl Reader<'_> {
    /// The trimmed value; `None` when unset or empty.
    pub(super) fn read(&self, key: &str) -> Result<Option<String>, Error> {
        let value =
            (self.get)(key).map_err(|e| Error::config(key, format!("could not be read: {e}")))?;
        Ok(value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()))
    }

    /// The value, or the table's default.
    pub(super) fn text(&self, key: &str) -> Result<String, Error> {
        let default = keys::key_of(key).default.unwrap_or("");
        Ok(self.read(key)?.unwrap_or_else(|| default.to_string()))
    }

    /// The value; unset means the table's default, set but empty means none
    /// (`kv_store=` disables the store).
    pub(super) fn or_none_if_empty(&self, key: &str) -> Result<Option<String>, Error> {
        if let Some(v) = self.read(key)? {
            return Ok(Some(v));
        }
        Ok(match (self.get)(key) {
            Ok(Some(v)) if v.trim().is_empty() => None,
            _ => keys::key_of(key)
                .default
                .filter(|d| !d.is_empty())
                .map(String::from),
        })
    }

    pub(super) fn number(&self, key: &str) -> Result<u64, Error> {
        let Kind::Number { min, max } = keys::key_of(key).kind else {
            panic!("`{key}` is not a number in config::KEYS");
        };
        let text = self.text(key)?;
        let n: u64 = text
            .parse()
            .map_err(|_| Error::config(key, format!("`{text}` is not a whole number")))?;
        if n < min || n > max {
            return Err(Error::config(key, format!("{n} is outside {min}..={max}")));
        }
        Ok(n)
    }

    pub(super) fn boolean(&self, key: &str) -> Result<bool, Error> {
        let text = self.text(key)?;
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Error::config(key, format!("`{text}` is not true or false"))),
        }
    }

    /// One of the table's words for `key`.
    pub(super) fn choice(&self, key: &str) -> Result<&'static str, Error> {
        let Kind::Choice(words) = keys::key_of(key).kind else {
            panic!("`{key}` is not a choice in config::KEYS");
        };
        let text = self.text(key)?;
        words
            .iter()
            .copied()
            .find(|w| *w == text)
            .ok_or_else(|| Error::config(key, format!("`{text}` is not {}", words.join(" or "))))
    }

    pub(super) fn words(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .text(key)?
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect())
    }

    pub(super) fn list(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .text(key)?
            .split([',', ' ', '\n', '\t'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
}
