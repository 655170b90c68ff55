//! DPoP as the provider keeps it (`dpop = on`): the key each cache key's tokens are
//! bound to, and the last nonce each server sent.
//!
//! - With `dpop_private_key`, that key, for every token (its thumbprint is in the
//!   cache key).
//! - Without, a P-256 key made by the instance that fetches a cache key's first token
//!   (the lease holder), kept in memory and sealed in the store under the role
//!   `dpop-key` beside the token, and used for that key's later tokens too. A token
//!   read from the store is served only with the key its `jkt` names: a key record
//!   that does not open, or is another key, makes the token a miss, and the fetch that
//!   follows makes a new key.
//! - Nonces (RFC 9449 §8, §9): per server (the token endpoint, or an API, each named
//!   with its origin: `token endpoint https://…`, `API https://…`), in memory and
//!   sealed in the store (role `dpop-nonce`), so that the fleet does not each pay the
//!   round trip that asks for one. Only a value `dpop::valid_nonce` takes is kept.

use super::{Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::oauth::client_auth::PrivateKey;
use crate::oauth::dpop::{self, DpopKey};
use crate::platform::Platform;
use crate::store::entry::Binding;
use crate::store::keys::{CacheKey, roles};
use crate::store::record::{Fields, Record};
use crate::store::{Entry, seal};
use base64ct::{Base64UrlUnpadded as B64, Encoding as _};
use serde::Serialize;

/// At most this many origins' nonces and generated keys per instance.
const MAX_KEPT: usize = 32;

/// A generated key as the store keys it (sealed): the P-256 scalar and, so that an
/// instance that reads it need not derive it again, the public key (SEC1
/// uncompressed), both base64url. A record without `public` (none is written so) is
/// read by deriving it.
struct KeyRecord {
    p256: zeroize::Zeroizing<String>,
    public: Option<String>,
}

impl Serialize for KeyRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("p256", self.p256.as_str())?;
        if let Some(public) = &self.public {
            map.serialize_entry("public", public)?;
        }
        map.end()
    }
}

impl Record for KeyRecord {
    fn from_fields(f: &Fields) -> Option<Self> {
        Some(KeyRecord {
            p256: zeroize::Zeroizing::new(f.string("p256")?),
            public: match f.value("public") {
                None => None,
                Some(_) => Some(f.string("public")?),
            },
        })
    }
}

impl KeyRecord {
    fn of(generated: &dpop::GeneratedKey) -> Self {
        KeyRecord {
            p256: zeroize::Zeroizing::new(B64::encode_string(generated.scalar())),
            public: generated.key.p256_public().map(|p| B64::encode_string(&p)),
        }
    }

    fn key(&self) -> Option<DpopKey> {
        let scalar = zeroize::Zeroizing::new(B64::decode_vec(&self.p256).ok()?);
        let key = match &self.public {
            Some(public) => PrivateKey::from_p256_parts(&scalar, &B64::decode_vec(public).ok()?),
            None => PrivateKey::from_p256_scalar(&scalar),
        };
        key.map(DpopKey::new)
    }
}

/// A nonce as the store keeps it (sealed).
#[derive(Serialize)]
struct NonceRecord {
    nonce: String,
}

impl Record for NonceRecord {
    fn from_fields(f: &Fields) -> Option<Self> {
        Some(NonceRecord {
            nonce: f.string("nonce")?,
        })
    }
}

impl<P: Platform> Provider<'_, P> {
    /// The key the next token of `l` is to be bound to (`None`: `dpop = off`): the
    /// configured one, or this key's generated one (the store's, or without a store this
    /// instance's), or a new one, sealed in the store before it is used. Called by the
    /// instance that fetches (the lease holder, with a store).
    pub(super) fn dpop_key_to_fetch_with(&self, l: &Lookup) -> Option<DpopKey> {
        let settings = self.settings.client.dpop.as_ref()?;
        if let Some(k) = &settings.configured {
            return Some(k.clone());
        }
        // With a store, its record decides (so the fleet's readers find the key this
        // token is bound to); without one, this instance's memory.
        let kept = match self.settings.cache.kv_store {
            Some(_) => self.stored_dpop_key(l),
            None => self.memory.borrow().dpop_keys.get(&l.key).cloned(),
        };
        if let Some(k) = kept {
            return Some(self.remember_dpop_key(l, k));
        }
        let random = |out: &mut [u8]| self.platform.random_bytes(out);
        let generated = dpop::generate_p256(&random)?;
        let key = DpopKey::new(generated.key.clone());
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let record = KeyRecord::of(&generated);
            let sealed = seal::seal_value(
                &record,
                &self.settings.cache.secret,
                &l.key.context(roles::DPOP_KEY),
                seal::nonce(self.platform),
            );
            if let Err(e) = self.platform.kv_set(store, &l.key.dpop_key(), &sealed) {
                self.store_error(&l.params, e);
            }
        }
        Some(self.remember_dpop_key(l, key))
    }

    /// The key `l`'s generated-key record in the store holds, if it opens.
    fn stored_dpop_key(&self, l: &Lookup) -> Option<DpopKey> {
        let store = self.settings.cache.kv_store.as_deref()?;
        let bytes = match self.platform.kv_get(store, &l.key.dpop_key()) {
            Ok(v) => v?,
            Err(e) => {
                self.store_error(&l.params, e);
                return None;
            }
        };
        let context = l.key.context(roles::DPOP_KEY);
        let opened = seal::open_value::<KeyRecord>(&bytes, &self.settings.cache.secret, &context);
        let key = opened.ok().and_then(|r| r.key());
        if key.is_none() {
            let ev = Event::new(
                Outcome::CacheRejected,
                &self.settings.audit,
                &l.params.scopes,
            );
            self.audit(&ev.with_detail("dpop-key record does not open or is not a key"));
        }
        key
    }

    fn remember_dpop_key(&self, l: &Lookup, key: DpopKey) -> DpopKey {
        let mut memory = self.memory.borrow_mut();
        if memory.dpop_keys.len() >= MAX_KEPT {
            memory.dpop_keys = Default::default();
        }
        memory.dpop_keys.insert(l.key.clone(), key.clone());
        key
    }

    /// Give `entry`, read from the store, the key its binding names; `false` when this
    /// instance cannot have it (the token is then no use to it: a miss). A Bearer
    /// token needs none.
    pub(super) fn bind_stored(&self, l: &Lookup, entry: &mut Entry) -> bool {
        let Some(binding) = entry.dpop.as_mut() else {
            return true;
        };
        let Some(settings) = self.settings.client.dpop.as_ref() else {
            return false;
        };
        let key = match &settings.configured {
            Some(k) => Some(k.clone()),
            None => {
                let known = self.memory.borrow().dpop_keys.get(&l.key).cloned();
                match known.filter(|k| k.jkt() == binding.jkt) {
                    Some(k) => Some(k),
                    None => self
                        .stored_dpop_key(l)
                        .map(|k| self.remember_dpop_key(l, k)),
                }
            }
        };
        match key.filter(|k| k.jkt() == binding.jkt) {
            Some(k) => {
                binding.key = Some(k);
                true
            }
            None => false,
        }
    }

    /// The binding of a token fetched with `key` and answered with `token_type`
    /// `DPoP` (`bound`).
    pub(super) fn binding(key: Option<&DpopKey>, bound: bool) -> Option<Binding> {
        key.filter(|_| bound).map(|k| Binding {
            jkt: k.jkt().to_string(),
            key: Some(k.clone()),
        })
    }

    /// The last nonce `origin` sent: from memory, else the store (read once per
    /// instance and origin: that none is there is remembered too, so an API that sends
    /// no nonces costs no store read per request).
    pub(crate) fn dpop_nonce(&self, origin: &str) -> Option<String> {
        let known = self
            .memory
            .borrow()
            .dpop_nonces
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, n)| n.clone());
        if let Some(n) = known {
            return Some(n).filter(|n| !n.is_empty());
        }
        let stored = self.stored_nonce(origin).unwrap_or_default();
        self.remember_nonce(origin, &stored);
        Some(stored).filter(|n| !n.is_empty())
    }

    fn stored_nonce(&self, origin: &str) -> Option<String> {
        let store = self.settings.cache.kv_store.as_deref()?;
        let key = CacheKey::dpop_server(self.settings.cache.key_names, origin);
        let bytes = self.platform.kv_get(store, &key.dpop_nonce()).ok()??;
        let context = key.context(roles::DPOP_NONCE);
        let record =
            seal::open_value::<NonceRecord>(&bytes, &self.settings.cache.secret, &context).ok()?;
        dpop::valid_nonce(&record.nonce).then_some(record.nonce)
    }

    /// Keep `nonce`, which `origin` just sent, if it is new: in memory and the store
    /// (a `dpop.nonce` audit line, without the value). Whether it was new (and valid).
    pub(crate) fn keep_dpop_nonce(&self, origin: &str, nonce: &str) -> bool {
        if !dpop::valid_nonce(nonce) || self.dpop_nonce_in_memory(origin, nonce) {
            return false;
        }
        self.remember_nonce(origin, nonce);
        if let Some(store) = self.settings.cache.kv_store.as_deref() {
            let key = CacheKey::dpop_server(self.settings.cache.key_names, origin);
            let record = NonceRecord {
                nonce: nonce.to_string(),
            };
            let sealed = seal::seal_value(
                &record,
                &self.settings.cache.secret,
                &key.context(roles::DPOP_NONCE),
                seal::nonce(self.platform),
            );
            if let Err(e) = self.platform.kv_set(store, &key.dpop_nonce(), &sealed) {
                let ev = Event::new(Outcome::StoreDegraded, &self.settings.audit, &[]);
                self.audit(&ev.with_detail(&e));
            }
        }
        let ev = Event::new(Outcome::DpopNonce, &self.settings.audit, &[]);
        self.audit(&ev.with_detail(origin));
        true
    }

    fn dpop_nonce_in_memory(&self, origin: &str, nonce: &str) -> bool {
        self.memory
            .borrow()
            .dpop_nonces
            .iter()
            .any(|(o, n)| o == origin && n == nonce)
    }

    fn remember_nonce(&self, origin: &str, nonce: &str) {
        let mut memory = self.memory.borrow_mut();
        let nonces = &mut memory.dpop_nonces;
        nonces.retain(|(o, _)| o != origin);
        if nonces.len() >= MAX_KEPT {
            nonces.clear();
        }
        nonces.push((origin.to_string(), nonce.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::http_types::HttpRequest;
    use crate::oauth::dpop::TokenType;
    use crate::provider::instance::MemoryCache;
    use crate::testing::{Rig, T0, p256_pem, response};
    use std::cell::RefCell;

    const TOKEN_URL: &str = "https://auth.example.com/token";

    /// The header and payload of the DPoP proof `request` carries.
    fn proof_of(request: &HttpRequest) -> (serde_json::Value, serde_json::Value) {
        let (_, value) = request
            .headers
            .iter()
            .find(|(k, _)| k == "dpop")
            .expect("a DPoP header");
        let text = std::str::from_utf8(value).unwrap();
        let mut parts = text.split('.');
        let mut json = || -> serde_json::Value {
            serde_json::from_slice(&B64::decode_vec(parts.next().unwrap()).unwrap()).unwrap()
        };
        (json(), json())
    }

    fn dpop_token(token: &str) -> crate::http_types::HttpResponse {
        response(
            200,
            &[],
            &format!(r#"{{"access_token":"{token}","token_type":"DPoP","expires_in":3600}}"#),
        )
    }

    fn thumbprint_in(header: &serde_json::Value) -> String {
        let jwk = &header["jwk"];
        let json = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["kty"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        use sha2::Digest as _;
        B64::encode_string(&sha2::Sha256::digest(json.as_bytes()))
    }

    /// The thumbprint of the rig's `dpop_private_key`.
    fn configured_jkt(rig: &Rig) -> String {
        let dpop = rig.settings.client.dpop.as_ref().unwrap();
        dpop.configured.as_ref().unwrap().jkt().to_string()
    }

    /// Another instance: the same settings and store, its own memory.
    fn other_instance(rig: &Rig) -> RefCell<MemoryCache> {
        let _ = rig;
        RefCell::new(MemoryCache::default())
    }

    fn get_with(rig: &Rig, memory: &RefCell<MemoryCache>) -> Result<crate::IssuedToken, Error> {
        let provider = Provider {
            settings: &rig.settings,
            platform: &rig.platform,
            memory,
        };
        crate::platform::ready(provider.get_token(&Default::default()))
    }

    #[test]
    fn a_configured_key_proves_every_token_request_and_binds_the_token() {
        let rig = Rig::new(&[("dpop", "on"), ("dpop_private_key", p256_pem())]);
        let jkt = configured_jkt(&rig);
        rig.platform.respond(Ok(response(503, &[], "busy")));
        rig.platform.respond(Ok(dpop_token("bound")));
        let t = rig.get().unwrap();
        assert_eq!(t.token_type, TokenType::DPoP);
        assert_eq!(t.dpop.as_ref().unwrap().jkt(), jkt);
        let sent = rig.platform.sent.borrow();
        assert_eq!(sent.len(), 2);
        let (h1, p1) = proof_of(&sent[0]);
        let (h2, p2) = proof_of(&sent[1]);
        assert_eq!(h1["typ"], "dpop+jwt");
        assert_eq!(h1["alg"], "ES256");
        assert!(h1["jwk"].get("d").is_none(), "no private member");
        assert_eq!(thumbprint_in(&h1), jkt);
        assert_eq!(
            (&p1["htm"], &p1["htu"]),
            (&"POST".into(), &TOKEN_URL.into())
        );
        assert_eq!(p1["iat"], T0 / 1000);
        assert!(p1.get("ath").is_none() && p1.get("nonce").is_none());
        // Every attempt its own proof.
        assert_ne!(p1["jti"], p2["jti"]);
        assert_eq!(h1, h2);
        // The store holds the binding; another instance serves it with the same key.
        let other = other_instance(&rig);
        let t2 = get_with(&rig, &other).unwrap();
        assert_eq!(
            (t2.source, t2.token_type),
            (crate::Source::Store, TokenType::DPoP)
        );
        assert_eq!(t2.dpop.unwrap().jkt(), jkt);
    }

    #[test]
    fn the_key_is_part_of_the_cache_key() {
        let off = Rig::new(&[]);
        let generated = Rig::new(&[("dpop", "on")]);
        let a = Rig::new(&[("dpop", "on"), ("dpop_private_key", p256_pem())]);
        let b = Rig::new(&[("dpop", "on"), ("dpop_private_key", p256_pem())]);
        let keys = [off.key(), generated.key(), a.key(), b.key()];
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(k), "{i}");
        }
        // Off: the canonical text of every earlier version (the cache survives).
        assert!(
            !String::from_utf8(off.key().context(""))
                .unwrap()
                .contains("dpop")
        );
        let jkt = configured_jkt(&a);
        assert!(
            String::from_utf8(a.key().context(""))
                .unwrap()
                .contains(&jkt)
        );
    }

    #[test]
    fn a_generated_key_is_sealed_beside_the_token_and_shared_by_the_fleet() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond(Ok(dpop_token("t1")));
        let t = rig.get().unwrap();
        let jkt = t.dpop.as_ref().unwrap().jkt().to_string();
        let (h, _) = proof_of(&rig.platform.sent.borrow()[0]);
        assert_eq!(thumbprint_in(&h), jkt);
        // The key record is written by the lease holder, before the token, and sealed.
        let key_name = rig.key().dpop_key();
        let ops = rig.platform.kv_ops.borrow().clone();
        let at = |name: String| ops.iter().position(|o| *o == format!("set {name}"));
        let (holder, key, token) = (
            at(rig.key().lease_holder()).unwrap(),
            at(key_name.clone()).unwrap(),
            at(rig.key().store_key()).unwrap(),
        );
        assert!(holder < key && key < token, "{ops:?}");
        let sealed = rig.platform.kv_value(&key_name).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("p256"));
        // Another instance: a store hit, the same key.
        let other = other_instance(&rig);
        let t2 = get_with(&rig, &other).unwrap();
        assert_eq!(t2.source, crate::Source::Store);
        assert_eq!(t2.dpop.unwrap().jkt(), jkt);
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        // The next token (forced) is bound to the same key.
        rig.platform.respond(Ok(dpop_token("t2")));
        let forced = crate::platform::ready(rig.provider().get_token(&crate::TokenRequest {
            force_refresh: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(forced.dpop.unwrap().jkt(), jkt);
    }

    #[test]
    fn a_key_record_that_is_not_a_key_is_a_miss_that_renews_key_and_token() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond(Ok(dpop_token("t1")));
        let first = rig.get().unwrap().dpop.unwrap().jkt().to_string();
        let key_name = rig.key().dpop_key();
        // Sealed correctly, but not a scalar; then not sealed at all.
        for junk in [
            seal::seal_value(
                &NonceRecord { nonce: "x".into() },
                &rig.settings.cache.secret,
                &rig.key().context(roles::DPOP_KEY),
                [5; 24],
            ),
            b"not a key".to_vec(),
        ] {
            rig.platform.kv_put(&key_name, &junk);
            rig.platform.respond(Ok(dpop_token("t-new")));
            let other = other_instance(&rig);
            let t = get_with(&rig, &other).unwrap();
            assert_eq!(
                (t.token.expose(), t.source),
                ("t-new", crate::Source::Fresh)
            );
            let jkt = t.dpop.unwrap().jkt().to_string();
            assert_ne!(jkt, first);
            // The new key is in the store: a third instance serves the new token.
            let third = other_instance(&rig);
            let t3 = get_with(&rig, &third).unwrap();
            assert_eq!(
                (t3.token.expose(), t3.source),
                ("t-new", crate::Source::Store)
            );
            assert_eq!(t3.dpop.unwrap().jkt(), jkt);
        }
        let rejected = rig.platform.events("token.cache");
        assert!(
            rejected.iter().any(|e| e["outcome"] == "rejected"
                && e["detail"].as_str().unwrap().contains("dpop-key record")),
            "{rejected:?}"
        );
    }

    #[test]
    fn a_bearer_answer_to_a_dpop_request_fails_unless_binding_is_not_required() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond_token("plain", 3600);
        let e = rig.get().unwrap_err();
        assert!(
            e.to_string().contains("the server ignored the proof"),
            "{e}"
        );
        assert_eq!(rig.platform.sent.borrow().len(), 1, "not retried");
        let lenient = Rig::new(&[("dpop", "on"), ("dpop_require_binding", "false")]);
        lenient.platform.respond_token("plain", 3600);
        let t = lenient.get().unwrap();
        assert_eq!((t.token_type, t.dpop.is_none()), (TokenType::Bearer, true));
        // Served as Bearer from the store too.
        let other = other_instance(&lenient);
        let t2 = get_with(&lenient, &other).unwrap();
        assert_eq!(
            (t2.source, t2.token_type),
            (crate::Source::Store, TokenType::Bearer)
        );
        // Without DPoP, a DPoP answer is of no use.
        let off = Rig::new(&[]);
        off.platform.respond(Ok(dpop_token("bound")));
        assert!(off.get().unwrap_err().to_string().contains("dpop is off"));
    }

    fn use_nonce(nonce: &str) -> crate::http_types::HttpResponse {
        response(
            400,
            &[("DPoP-Nonce", nonce)],
            r#"{"error":"use_dpop_nonce","error_description":"nonce required"}"#,
        )
    }

    #[test]
    fn use_dpop_nonce_is_tried_again_at_once_with_the_nonce_and_the_fleet_keeps_it() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond(Ok(use_nonce("n-1")));
        rig.platform.respond(Ok(dpop_token("t1")));
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "t1");
        assert_eq!(rig.platform.slept_ms.get(), 0, "at once");
        {
            let sent = rig.platform.sent.borrow();
            assert!(proof_of(&sent[0]).1.get("nonce").is_none());
            assert_eq!(proof_of(&sent[1]).1["nonce"], "n-1");
        }
        let fetches = rig.platform.events("token.fetch");
        assert_eq!(
            fetches.len(),
            1,
            "the nonce round trip is not a failure: {fetches:?}"
        );
        assert_eq!(fetches[0]["attempt"], 1);
        let nonces = rig.platform.events("dpop.nonce");
        assert_eq!(nonces.len(), 1);
        assert_eq!(nonces[0]["outcome"], "new");
        assert!(
            !nonces[0].to_string().contains("n-1"),
            "no nonce value in a line"
        );
        // Another instance's first proof carries the nonce from the store.
        rig.platform.respond(Ok(dpop_token("t2")));
        let other = other_instance(&rig);
        crate::platform::ready(
            Provider {
                settings: &rig.settings,
                platform: &rig.platform,
                memory: &other,
            }
            .get_token(&crate::TokenRequest {
                force_refresh: true,
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(proof_of(&rig.platform.sent.borrow()[2]).1["nonce"], "n-1");
        // A new nonce in a success answer replaces the old one.
        rig.platform.respond(Ok(response(
            200,
            &[("dpop-nonce", "n-2")],
            r#"{"access_token":"t3","token_type":"DPoP","expires_in":3600}"#,
        )));
        rig.platform.respond(Ok(dpop_token("t4")));
        for _ in 0..2 {
            crate::platform::ready(rig.provider().get_token(&crate::TokenRequest {
                force_refresh: true,
                ..Default::default()
            }))
            .unwrap();
        }
        assert_eq!(proof_of(&rig.platform.sent.borrow()[4]).1["nonce"], "n-2");
    }

    #[test]
    fn a_server_that_asks_for_a_new_nonce_every_time_gets_two_requests_and_a_clear_error() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond(Ok(use_nonce("n-1")));
        rig.platform.respond(Ok(use_nonce("n-2")));
        rig.platform.respond(Ok(dpop_token("never")));
        let e = rig.get().unwrap_err();
        assert_eq!(rig.platform.sent.borrow().len(), 2);
        let text = e.to_string();
        assert!(
            text.starts_with("use_dpop_nonce (HTTP 400)") && text.contains("again right after"),
            "{text}"
        );
    }

    #[test]
    fn a_nonce_header_that_may_not_be_sent_back_is_ignored_and_not_retried() {
        let huge = "n".repeat(513);
        for bad in [huge.as_str(), "a\r\nb", "caf\u{e9}", "two words", ""] {
            let rig = Rig::new(&[("dpop", "on")]);
            rig.platform.respond(Ok(use_nonce(bad)));
            rig.platform.respond(Ok(dpop_token("never")));
            let e = rig.get().unwrap_err();
            assert_eq!(rig.platform.sent.borrow().len(), 1, "{bad:?}");
            assert!(e.to_string().contains("sent none that may be used"), "{e}");
            assert!(rig.platform.events("dpop.nonce").is_empty());
            assert!(
                rig.memory
                    .borrow()
                    .dpop_nonces
                    .iter()
                    .all(|(_, n)| n.is_empty())
            );
        }
    }

    #[test]
    fn without_a_store_a_generated_key_lives_in_memory() {
        let rig = Rig::new(&[("dpop", "on"), ("kv_store", "")]);
        rig.platform.respond(Ok(dpop_token("t1")));
        rig.platform.respond(Ok(dpop_token("t2")));
        let a = rig.get().unwrap().dpop.unwrap();
        let forced = crate::platform::ready(rig.provider().get_token(&crate::TokenRequest {
            force_refresh: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(forced.dpop.unwrap(), a);
        assert!(rig.platform.kv_keys().is_empty());
    }

    #[test]
    fn a_key_record_holds_the_public_key_and_one_without_it_still_opens() {
        let rig = Rig::new(&[("dpop", "on")]);
        rig.platform.respond(Ok(dpop_token("t1")));
        let jkt = rig.get().unwrap().dpop.unwrap().jkt().to_string();
        let context = rig.key().context(roles::DPOP_KEY);
        let sealed = rig.platform.kv_value(&rig.key().dpop_key()).unwrap();
        let record =
            seal::open_value::<KeyRecord>(&sealed, &rig.settings.cache.secret, &context).unwrap();
        assert!(record.public.is_some());
        assert_eq!(record.key().unwrap().jkt(), jkt);
        // The scalar alone (a record of another writer): the same key, derived.
        let scalar_only = KeyRecord {
            p256: record.p256.clone(),
            public: None,
        };
        assert_eq!(scalar_only.key().unwrap().jkt(), jkt);
        let resealed =
            seal::seal_value(&scalar_only, &rig.settings.cache.secret, &context, [1; 24]);
        rig.platform.kv_put(&rig.key().dpop_key(), &resealed);
        let other = other_instance(&rig);
        let t = get_with(&rig, &other).unwrap();
        assert_eq!(
            (t.source, t.dpop.unwrap().jkt()),
            (crate::Source::Store, jkt.as_str())
        );
    }

    #[test]
    fn a_stored_nonce_that_does_not_open_or_may_not_be_sent_is_not_sent() {
        let server = format!("token endpoint {}", "https://auth.example.com:443");
        for planted in [Some("bad nonce"), Some(""), None] {
            let rig = Rig::new(&[("dpop", "on")]);
            let key = CacheKey::dpop_server(rig.settings.cache.key_names, &server);
            let value = match planted {
                Some(nonce) => seal::seal_value(
                    &NonceRecord {
                        nonce: nonce.into(),
                    },
                    &rig.settings.cache.secret,
                    &key.context(roles::DPOP_NONCE),
                    [4; 24],
                ),
                None => b"not sealed".to_vec(),
            };
            rig.platform.kv_put(&key.dpop_nonce(), &value);
            rig.platform.respond(Ok(dpop_token("t1")));
            rig.get().unwrap();
            let (_, claims) = proof_of(&rig.platform.sent.borrow()[0]);
            assert!(claims.get("nonce").is_none(), "{planted:?}");
        }
        // A good one is sent (the name above is the token endpoint's).
        let rig = Rig::new(&[("dpop", "on")]);
        let key = CacheKey::dpop_server(rig.settings.cache.key_names, &server);
        let record = NonceRecord {
            nonce: "good".into(),
        };
        let context = key.context(roles::DPOP_NONCE);
        let sealed = seal::seal_value(&record, &rig.settings.cache.secret, &context, [4; 24]);
        rig.platform.kv_put(&key.dpop_nonce(), &sealed);
        rig.platform.respond(Ok(dpop_token("t1")));
        rig.get().unwrap();
        assert_eq!(proof_of(&rig.platform.sent.borrow()[0]).1["nonce"], "good");
    }
}
