//! A Google service account's key file (`service_account_key`): the JSON object Google's
//! console or `gcloud iam service-accounts keys create` writes. Read as it is, it gives
//! `grant = jwt_bearer` what it needs: `client_email` (the assertion's `iss`),
//! `private_key` (PKCS#8 PEM, RSA), `private_key_id` (its `kid`) and `token_uri`.
//! Pure; an error names the field at fault and shows nothing of the file.

use crate::secret::Secret;
use serde_json::{Map, Value};

/// What a key file gives the configuration.
#[derive(Clone)]
pub struct ServiceAccount {
    /// `client_email`: the client id (`iss`).
    pub client_email: String,
    /// `private_key`: the PEM that signs the assertion.
    pub private_key: Secret,
    /// `private_key_id`: the assertion's `kid`.
    pub private_key_id: String,
    /// `token_uri`: the token endpoint.
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount({})", self.client_email)
    }
}

impl ServiceAccount {
    /// The key file's fields; an error says which one is wrong, never what it holds
    /// (but for a `type` that is not a service account's, which names the kind).
    pub fn parse(json: &str) -> Result<Self, String> {
        // From bytes, as the issuer metadata is read: one JSON reader in the component.
        let value: Value = serde_json::from_slice(json.as_bytes()).map_err(|_| {
            "not JSON: expected the JSON key file of a Google service account (`gcloud iam service-accounts keys create`)".to_string()
        })?;
        let Some(file) = value.as_object() else {
            return Err("not a JSON object: expected a Google service account's key file".into());
        };
        match file.get("type").and_then(Value::as_str) {
            Some("service_account") => {}
            Some(other) => {
                return Err(format!(
                    "`type` is `{}`, not `service_account`: only a service account's key file signs a JWT-bearer grant",
                    crate::error::sanitize(other, 40)
                ));
            }
            None => return Err(missing("type")),
        }
        Ok(ServiceAccount {
            client_email: field(file, "client_email")?,
            private_key: Secret::new(field(file, "private_key")?),
            private_key_id: field(file, "private_key_id")?,
            token_uri: field(file, "token_uri")?,
        })
    }
}

fn missing(name: &str) -> String {
    format!("`{name}` is missing, empty or not a string")
}

fn field(file: &Map<String, Value>, name: &str) -> Result<String, String> {
    file.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .ok_or_else(|| missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key file as Google writes it (the key shortened: it is not parsed here).
    fn file(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut v = serde_json::json!({
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": "8f2c0d1e",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----\n",
            "client_email": "reporter@acme-prod.iam.gserviceaccount.com",
            "client_id": "109876543210987654321",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "universe_domain": "googleapis.com"
        });
        edit(v.as_object_mut().unwrap());
        v.to_string()
    }

    #[test]
    fn a_key_file_gives_the_email_key_key_id_and_token_uri() {
        let a = ServiceAccount::parse(&file(|_| {})).unwrap();
        assert_eq!(a.client_email, "reporter@acme-prod.iam.gserviceaccount.com");
        assert!(
            a.private_key
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(a.private_key_id, "8f2c0d1e");
        assert_eq!(a.token_uri, "https://oauth2.googleapis.com/token");
        assert_eq!(
            format!("{a:?}"),
            "ServiceAccount(reporter@acme-prod.iam.gserviceaccount.com)"
        );
    }

    #[test]
    fn a_wrong_file_names_the_field_and_shows_none_of_it() {
        let cases: Vec<(String, &str)> = vec![
            ("MIIEvQIBADANBgkq".into(), "not JSON"),
            ("[\"MIIEvQIBADANBgkq\"]".into(), "not a JSON object"),
            (
                file(|f| {
                    f.insert("type".into(), "authorized_user".into());
                }),
                "`type` is `authorized_user`, not `service_account`",
            ),
            (
                file(|f| {
                    f.remove("type");
                }),
                "`type` is missing",
            ),
            (
                file(|f| {
                    f.remove("client_email");
                }),
                "`client_email` is missing",
            ),
            (
                file(|f| {
                    f.insert("private_key".into(), 7.into());
                }),
                "`private_key` is missing, empty or not a string",
            ),
            (
                file(|f| {
                    f.insert("private_key_id".into(), " ".into());
                }),
                "`private_key_id` is missing",
            ),
            (
                file(|f| {
                    f.remove("token_uri");
                }),
                "`token_uri` is missing",
            ),
        ];
        for (json, expected) in cases {
            let e = ServiceAccount::parse(&json).unwrap_err();
            assert!(e.starts_with(expected), "{e}");
            assert!(!e.contains("MIIEvQIBADANBgkq"), "{e}");
        }
    }
}
