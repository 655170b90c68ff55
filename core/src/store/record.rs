//! How each stored value is read back: a [`Record`] is written with serde and read
//! field by field from its JSON object ([`Fields`]). `seal` encrypts and decrypts
//! records; each stored type says here how it is rebuilt.

use serde::Serialize;
use serde_json::{Map, Value};

/// A value kept sealed in the store: written with serde, read back field by field from
/// the JSON object (derived deserialisers cost the component more than this).
pub trait Record: Serialize + Sized {
    /// The value, if `fields` has every field it needs with the right type.
    fn from_fields(fields: &Fields) -> Option<Self>;
}

/// The fields of a stored JSON object, with typed getters.
pub struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// A field as JSON, for a value with its own shape.
    pub(crate) fn value(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The fields of a nested object.
    pub(crate) fn of(value: &Value) -> Option<Fields<'_>> {
        value.as_object().map(Fields)
    }

    pub(crate) fn u64(&self, name: &str) -> Option<u64> {
        self.0.get(name)?.as_u64()
    }

    pub(crate) fn u32(&self, name: &str) -> Option<u32> {
        u32::try_from(self.u64(name)?).ok()
    }

    pub(crate) fn u16(&self, name: &str) -> Option<u16> {
        u16::try_from(self.u64(name)?).ok()
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.0.get(name)?.as_bool()
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        Some(self.0.get(name)?.as_str()?.to_string())
    }

    /// A string or `null`.
    pub(crate) fn optional_string(&self, name: &str) -> Option<Option<String>> {
        match self.0.get(name)? {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => None,
        }
    }

    pub(crate) fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.0
            .get(name)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}
