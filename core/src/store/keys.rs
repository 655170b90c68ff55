//! Every key the component writes to the shared store, each built by one function.
//!
//! Names are `oauth2-token-provider:v2:<key id>:<role>:<tag>`:
//!
//! - the **key id** (16 hex digits) is an HKDF output of the client credential (the
//!   secret today): deployments with different credentials for one client never share
//!   a key, so a rolling secret rotation is two independent caches, not a fight over
//!   one; an operator can tell (and delete) the keys of a retired credential;
//! - the **tag** is an HMAC-SHA256, under another HKDF output of the credential, of
//!   the role and the cache key's canonical text (and a lease's slot): a party without
//!   the credential can neither confirm a guess of client id, scopes or token URL from
//!   a name nor compute the name of a key that does not exist yet (a future lease).
//!
//! | role | holds | built by |
//! |---|---|---|
//! | `token` | the token entry, sealed | [`CacheKey::store_key`] |
//! | `lease` | a single-flight counter of one slot and generation | [`CacheKey::lease`] |
//! | `holder` | the lease holder's record (slot, generation, start), sealed | [`CacheKey::lease_holder`] |
//! | `pause` | the end of a refresh pause, sealed | [`CacheKey::refresh_pause`] |
//! | `failure` | a shared failure of one client (cooldown or outage), sealed | [`CacheKey::failure`] |
//! | `metadata` | an issuer's discovered metadata and when it was fetched, sealed | [`CacheKey::metadata`] (on [`CacheKey::discovery`], whose lease is the discovery's single flight) |
//! | `dpop-key` | the P-256 key generated for a cache key's DPoP tokens, sealed | [`CacheKey::dpop_key`] |
//! | `dpop-nonce` | the last `DPoP-Nonce` of one server (the token endpoint, or an API at one origin), sealed | [`CacheKey::dpop_nonce`] (on [`CacheKey::dpop_server`]) |
//!
//! Every value that is not a counter is sealed under the credential with the key's
//! canonical text and role as associated data (`store::seal`), so a value written by a
//! party without the credential, or for another key or role, counts as absent.
//!
//! The prefix is a namespace (Spin's Redis store shares one keyspace between all apps)
//! and the format version. Changing any of this orphans every cached token.

use crate::oauth::client::ClientSettings;
use crate::oauth::request::TokenParams;
use crate::secret::{Secret, hex};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Prefix of every key we write.
pub const KEY_PREFIX: &str = "oauth2-token-provider:v2:";

/// Length of a name's tag in bytes (hex doubles it): 128 bits.
const TAG_LEN: usize = 16;

/// The naming keys of one client credential: its public key id and the secret HMAC
/// key of its names. Derived once per instance (`Settings::load`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyNames {
    id: [u8; 8],
    mac: [u8; 32],
}

impl std::fmt::Debug for KeyNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyNames({})", self.key_id())
    }
}

impl KeyNames {
    /// HKDF-SHA256 of the credential, one output per use (never a plain hash of it).
    pub fn new(credential: &Secret) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(
            Some(b"oauth2-token-provider store names v2"),
            credential.expose().as_bytes(),
        );
        let mut names = KeyNames {
            id: [0; 8],
            mac: [0; 32],
        };
        hk.expand(b"key id", &mut names.id)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        hk.expand(b"key names", &mut names.mac)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        names
    }

    /// The credential's key id: 16 hex digits, the same in every name of its keys.
    pub(crate) fn key_id(&self) -> String {
        hex(&self.id)
    }

    /// `<prefix><key id>:<role>:<HMAC of role, canonical text and extra>`.
    fn name(&self, role: &str, canonical: &str, extra: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.mac)
            .expect("HMAC takes a key of any length");
        for part in [role.as_bytes(), canonical.as_bytes(), extra] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let tag = mac.finalize().into_bytes();
        format!(
            "{KEY_PREFIX}{}:{role}:{}",
            self.key_id(),
            hex(&tag[..TAG_LEN])
        )
    }
}

/// Everything that makes two tokens interchangeable, and the naming keys of the
/// credential that fetched them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Canonical, unambiguous text of the key's parts (a JSON array).
    canonical: String,
    names: KeyNames,
}

impl CacheKey {
    pub fn new(c: &ClientSettings, names: KeyNames, params: &TokenParams) -> Self {
        // A JSON array, written straight from a tuple (no `Value` tree on a hit's path).
        let parts = (
            "v2",
            &c.server_text,
            &c.id,
            c.auth_method.as_str(),
            &params.scopes,
            &params.audience,
            &params.resources,
        );
        // With DPoP, one more part: the key's thumbprint, or `generated` (so a Bearer
        // token is never served as a DPoP one, nor one bound to a rotated key). With a
        // grant other than client_credentials, two: DPoP's or null, and the grant with
        // its subject (another subject's tokens are another user's). Without either,
        // the text of every earlier version: an upgrade keeps the cache.
        let dpop = c.dpop.as_ref().map(|d| d.cache_part());
        // (The grant's part is a list: `["jwt_bearer", subject]` is what it was.)
        let canonical = match (dpop, c.grant.cache_part()) {
            (None, None) => serde_json::to_string(&parts),
            (Some(d), None) => serde_json::to_string(&(parts, d)),
            (d, Some(g)) => serde_json::to_string(&(parts, d, g)),
        };
        CacheKey {
            canonical: canonical.unwrap_or_else(|_| unreachable!("strings serialise")),
            names,
        }
    }

    /// The key shared by every token of one client (token URL, client id, auth
    /// method, and the grant unless it is client_credentials): its failures (wrong
    /// credentials, an endpoint that is down) are the same for every scope.
    pub(crate) fn client(c: &ClientSettings, names: KeyNames) -> Self {
        let parts = (
            "v2",
            "client",
            &c.server_text,
            &c.id,
            c.auth_method.as_str(),
        );
        let canonical = match c.grant.cache_part() {
            None => serde_json::to_string(&parts),
            Some(g) => serde_json::to_string(&(parts, g)),
        };
        CacheKey {
            canonical: canonical.unwrap_or_else(|_| unreachable!("strings serialise")),
            names,
        }
    }

    /// The key of an issuer's discovered metadata (`discovery`): shared by every
    /// client of the store that has the credential, one per issuer.
    pub(crate) fn discovery(names: KeyNames, issuer: &str) -> Self {
        let parts = ("v2", "discovery", issuer);
        CacheKey {
            canonical: serde_json::to_string(&parts)
                .unwrap_or_else(|_| unreachable!("strings serialise")),
            names,
        }
    }

    /// The sealing context of this key's value in `role`: the canonical text and the
    /// role (a value sealed for one role never opens as another).
    pub fn context(&self, role: &str) -> Vec<u8> {
        format!("{}#{role}", self.canonical).into_bytes()
    }

    /// The token entry's key.
    pub fn store_key(&self) -> String {
        self.names.name(roles::TOKEN, &self.canonical, &[])
    }

    /// The single-flight counter of lease `slot`, generation `generation`.
    pub fn lease(&self, slot: u64, generation: u32) -> String {
        let mut extra = [0u8; 12];
        extra[..8].copy_from_slice(&slot.to_be_bytes());
        extra[8..].copy_from_slice(&generation.to_be_bytes());
        self.names.name(roles::LEASE, &self.canonical, &extra)
    }

    /// The record of who holds this key's lease, since when.
    pub fn lease_holder(&self) -> String {
        self.names.name(roles::HOLDER, &self.canonical, &[])
    }

    /// The end of a refresh pause of this key's token.
    pub fn refresh_pause(&self) -> String {
        self.names.name(roles::PAUSE, &self.canonical, &[])
    }

    /// Which origin's 401 dropped this key's last token, and when
    /// (`provider::rejected`).
    pub(crate) fn dropped(&self) -> String {
        self.names.name(roles::DROPPED, &self.canonical, &[])
    }

    /// A shared failure (on [`CacheKey::client`]).
    pub(crate) fn failure(&self) -> String {
        self.names.name(roles::FAILURE, &self.canonical, &[])
    }

    /// The DPoP key generated for this key's tokens (with `dpop = on` and no
    /// `dpop_private_key`).
    pub(crate) fn dpop_key(&self) -> String {
        self.names.name(roles::DPOP_KEY, &self.canonical, &[])
    }

    /// The key of the last `DPoP-Nonce` a server sent (`server`: the token endpoint's
    /// or an API's), shared by every client of the store that has the credential.
    pub(crate) fn dpop_server(names: KeyNames, server: &str) -> Self {
        let parts = ("v2", "dpop-nonce", server);
        CacheKey {
            canonical: serde_json::to_string(&parts)
                .unwrap_or_else(|_| unreachable!("strings serialise")),
            names,
        }
    }

    /// The nonce (on [`CacheKey::dpop_server`]).
    pub(crate) fn dpop_nonce(&self) -> String {
        self.names.name(roles::DPOP_NONCE, &self.canonical, &[])
    }

    /// Discovered metadata (on [`CacheKey::discovery`]).
    pub fn metadata(&self) -> String {
        self.names.name(roles::METADATA, &self.canonical, &[])
    }
}

/// The roles, as they appear in names and sealing contexts.
pub mod roles {
    pub const TOKEN: &str = "token";
    pub(crate) const LEASE: &str = "lease";
    pub const HOLDER: &str = "holder";
    pub const PAUSE: &str = "pause";
    pub const FAILURE: &str = "failure";
    pub const DROPPED: &str = "dropped";
    pub(crate) const METADATA: &str = "metadata";
    pub(crate) const DPOP_KEY: &str = "dpop-key";
    pub(crate) const DPOP_NONCE: &str = "dpop-nonce";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{key_for, settings};

    #[test]
    fn scope_order_and_duplicates_share_a_key_but_other_parts_do_not() {
        let s = settings(&[]);
        assert_eq!(key_for(&s, &["b", "a", "a"]), key_for(&s, &["a b"]));
        assert_ne!(key_for(&s, &["a"]), key_for(&s, &["a", "b"]));
        assert_ne!(key_for(&s, &["ab"]), key_for(&s, &["a", "b"]));
        let post = settings(&[("auth_method", "client_secret_post")]);
        assert_ne!(key_for(&s, &["a"]), key_for(&post, &["a"]));
        let k = key_for(&s, &["a"]).store_key();
        assert!(
            k.starts_with(KEY_PREFIX) && k.len() == KEY_PREFIX.len() + 16 + 7 + 32,
            "{k}"
        );
    }

    /// `grant = jwt_bearer` and its subject are in the key (another subject's tokens
    /// are another user's), the client key too; a `client_credentials` key keeps the
    /// text of every earlier version, so an upgrade keeps the cache.
    #[test]
    fn the_grant_and_its_subject_are_part_of_the_key() {
        let pem = crate::testing::p256_pem();
        let bearer = |subject: &'static str| {
            settings(&[
                ("grant", "jwt_bearer"),
                ("auth_method", "none"),
                ("client_private_key", pem),
                ("jwt_bearer_subject", subject),
            ])
        };
        let (cc, a, b, none) = (settings(&[]), bearer("a@x"), bearer("b@x"), bearer(""));
        let [cc_text, a_text, b_text, none_text] =
            [&cc, &a, &b, &none].map(|s| key_for(s, &["read"]).canonical);
        assert_eq!(
            cc_text,
            r#"["v2","https://auth.example.com/token","svc","client_secret_basic",["read"],null,[]]"#
        );
        assert_eq!(
            a_text,
            r#"[["v2","https://auth.example.com/token","svc","none",["read"],null,[]],null,["jwt_bearer","a@x"]]"#
        );
        assert_ne!(a_text, b_text);
        assert_ne!(a_text, none_text);
        assert_ne!(cc.client_key().canonical, a.client_key().canonical);
        assert_ne!(a.client_key().canonical, b.client_key().canonical);
    }

    /// `grant = token_exchange`: whom the subject token is about (a JWT's `iss` and
    /// `sub`) is in the key, so a rotated token for the same workload keeps the cache
    /// and another workload's never reads it.
    #[test]
    fn a_token_exchange_key_holds_whom_the_subject_token_is_about() {
        let jwt = |sub: &str, exp: u64| {
            let payload = format!(r#"{{"iss":"https://k8s","sub":"{sub}","exp":{exp}}}"#);
            crate::testing::unsigned_jwt(&payload)
        };
        let key = |token: String| {
            let s = settings(&[
                ("grant", "token_exchange"),
                ("subject_token", Box::leak(token.into_boxed_str())),
            ]);
            key_for(&s, &["read"]).canonical
        };
        let app = key(jwt("app", 4_102_444_800));
        assert_eq!(
            app,
            key(jwt("app", 4_102_444_900)),
            "rotated, same workload"
        );
        assert_ne!(app, key(jwt("other", 4_102_444_800)));
        assert!(app.ends_with(r#"null,["token_exchange","urn:ietf:params:oauth:token-type:jwt","urn:ietf:params:oauth:token-type:access_token","[\"https://k8s\",\"app\"]"]]"#), "{app}");
    }

    #[test]
    fn the_store_layout_is_the_v2_format() {
        // These names are the store format: a change here orphans every cached token.
        let s = settings(&[]);
        let key = key_for(&s, &["read"]);
        let id = s.cache.key_names.key_id();
        let prefix = format!("{KEY_PREFIX}{id}:");
        for (name, role) in [
            (key.store_key(), "token"),
            (key.lease(7, 0), "lease"),
            (key.lease_holder(), "holder"),
            (key.refresh_pause(), "pause"),
            (s.client_key().failure(), "failure"),
            (key.dropped(), "dropped"),
        ] {
            let tag = name
                .strip_prefix(&format!("{prefix}{role}:"))
                .unwrap_or_else(|| panic!("{name}"));
            assert!(
                tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
                "{name}"
            );
        }
        let all = [
            key.store_key(),
            key.lease(7, 0),
            key.lease(7, 1),
            key.lease(8, 0),
            key.lease_holder(),
            key.refresh_pause(),
            key.dropped(),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(!all[..i].contains(a), "{a} repeats");
        }
    }

    #[test]
    fn the_canonical_text_is_a_json_array_of_the_parts() {
        let s = settings(&[("audience", "api")]);
        let k = key_for(&s, &["b", "a"]);
        assert_eq!(
            String::from_utf8(k.context("")).unwrap(),
            r#"["v2","https://auth.example.com/token","svc","client_secret_basic",["a","b"],"api",[]]#"#
        );
    }

    #[test]
    fn names_depend_on_the_credential_through_hkdf_not_a_hash_of_it() {
        let s = settings(&[]);
        let rotated = settings(&[("client_secret", "rotated")]);
        let (a, b) = (key_for(&s, &["read"]), key_for(&rotated, &["read"]));
        assert_ne!(a.store_key(), b.store_key());
        assert_ne!(a.lease(1, 0), b.lease(1, 0));
        let (ida, idb) = (s.cache.key_names.key_id(), rotated.cache.key_names.key_id());
        assert_ne!(ida, idb);
        // The key id is not the start of a SHA-256 of the secret (it is an HKDF output).
        use sha2::Digest;
        let plain = hex(&Sha256::digest(s.cache.secret.expose().as_bytes()));
        assert!(!plain.starts_with(&ida) && !a.store_key().contains(&plain[..32]));
        // Debug shows the key id, never the naming key.
        assert_eq!(
            format!("{:?}", s.cache.key_names),
            format!("KeyNames({ida})")
        );
    }
}
