//! What the native unit tests share: a [`Platform`] with a hand-driven clock that
//! `sleep_ms` advances, an in-memory store that can be made to fail, scripted HTTP
//! responses, and recorded requests and audit lines (`on_sleep` lets a test act as
//! another instance while this one waits); settings, keys and entries to test with;
//! and a [`Rig`] that runs the provider on all of it.

use crate::config::Settings;
use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest, HttpResponse};
use crate::oauth::request::{TokenParams, TokenRequest};
use crate::platform::Platform;
use crate::provider::instance::MemoryCache;
use crate::provider::settings::ProviderSettings;
use crate::provider::{IssuedToken, Provider};
use crate::secret::AccessToken;
use crate::send::SendSettings;
use crate::store::{CacheKey, Entry, seal};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

type SleepHook = Box<dyn FnMut(&FakePlatform)>;
type Responder = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, Error>>;

#[derive(Default)]
pub(crate) struct FakePlatform {
    now_ms: Cell<u64>,
    kv: RefCell<BTreeMap<String, Vec<u8>>>,
    store_fails: Cell<bool>,
    responses: RefCell<VecDeque<Result<HttpResponse, Error>>>,
    pub(crate) sent: RefCell<Vec<HttpRequest>>,
    pub(crate) logs: RefCell<Vec<String>>,
    pub(crate) slept_ms: Cell<u64>,
    /// How long each `send` takes on the fake clock (a `Timeout` if longer than the
    /// request's timeout).
    pub(crate) send_ms: Cell<u64>,
    on_sleep: RefCell<Option<SleepHook>>,
    random: Cell<u64>,
    /// While set, every `send` waits (returns `Pending`) before it is sent: a network
    /// round trip in progress, to test what other requests of the instance do then.
    pub(crate) hold_sends: Cell<bool>,
    /// Every write and delete made through the platform, in order (`set <key>`,
    /// `delete <key>`), to test what is written before what.
    pub(crate) kv_ops: RefCell<Vec<String>>,
    /// Answers every `send` once the scripted responses are used up.
    responder: RefCell<Option<Responder>>,
}

impl FakePlatform {
    pub(crate) fn at(now_ms: u64) -> Self {
        let p = FakePlatform::default();
        p.now_ms.set(now_ms);
        p
    }

    pub(crate) fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    pub(crate) fn fail_store(&self, fail: bool) {
        self.store_fails.set(fail);
    }

    pub(crate) fn kv_put(&self, key: &str, value: &[u8]) {
        self.kv.borrow_mut().insert(key.into(), value.into());
    }

    pub(crate) fn kv_value(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.borrow().get(key).cloned()
    }

    pub(crate) fn kv_remove(&self, key: &str) {
        self.kv.borrow_mut().remove(key);
    }

    pub(crate) fn kv_keys(&self) -> Vec<String> {
        self.kv.borrow().keys().cloned().collect()
    }

    /// Queue the next answer of the token endpoint (or of any `send`).
    pub(crate) fn respond(&self, response: Result<HttpResponse, Error>) {
        self.responses.borrow_mut().push_back(response);
    }

    /// Drop every scripted response not used yet.
    pub(crate) fn clear_responses(&self) {
        self.responses.borrow_mut().clear();
    }

    /// A 200 token response.
    pub(crate) fn respond_token(&self, token: &str, expires_in: u64) {
        self.respond(Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: format!(
                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
            )
            .into_bytes(),
        }));
    }

    /// Answer every request with `f` once the scripted responses are used up: a
    /// server that answers by what is asked.
    pub(crate) fn answer_with(
        &self,
        f: impl FnMut(&HttpRequest) -> Result<HttpResponse, Error> + 'static,
    ) {
        *self.responder.borrow_mut() = Some(Box::new(f));
    }

    /// Run `hook` at every `sleep_ms`, after the clock moved.
    pub(crate) fn on_sleep(&self, hook: impl FnMut(&FakePlatform) + 'static) {
        *self.on_sleep.borrow_mut() = Some(Box::new(hook));
    }

    pub(crate) fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.logs
            .borrow()
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit line is JSON"))
            .filter(|v| v["event"] == event)
            .collect()
    }

    fn store(&self) -> Result<(), String> {
        if self.store_fails.get() {
            Err("store unavailable".into())
        } else {
            Ok(())
        }
    }
}

impl Platform for FakePlatform {
    fn now_unix_ms(&self) -> u64 {
        self.now_ms.get()
    }

    fn monotonic_ms(&self) -> u64 {
        self.now_ms.get()
    }

    async fn sleep_ms(&self, ms: u64) {
        self.advance(ms);
        self.slept_ms.set(self.slept_ms.get() + ms);
        let hook = self.on_sleep.borrow_mut().take();
        if let Some(mut hook) = hook {
            hook(self);
            let mut slot = self.on_sleep.borrow_mut();
            if slot.is_none() {
                *slot = Some(hook);
            }
        }
    }

    fn random_bytes(&self, out: &mut [u8]) {
        // Deterministic, but different on every call.
        for b in out.iter_mut() {
            let next = self
                .random
                .get()
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.random.set(next);
            *b = (next >> 33) as u8;
        }
    }

    async fn send(
        &self,
        request: &HttpRequest,
        options: HttpOptions,
    ) -> Result<HttpResponse, Error> {
        std::future::poll_fn(|_| {
            if self.hold_sends.get() {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        self.sent.borrow_mut().push(request.clone());
        // Like a real host, give up at the request's timeout.
        if self.send_ms.get() > options.timeout_ms {
            self.advance(options.timeout_ms);
            return Err(Error::Timeout);
        }
        self.advance(self.send_ms.get());
        let scripted = self.responses.borrow_mut().pop_front();
        scripted.unwrap_or_else(|| match self.responder.borrow_mut().as_mut() {
            Some(answer) => answer(request),
            None => Err(Error::Transport("no scripted response".into())),
        })
    }

    fn kv_get(&self, _store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store()?;
        Ok(self.kv.borrow().get(key).cloned())
    }

    fn kv_set(&self, _store: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.store()?;
        self.kv_ops.borrow_mut().push(format!("set {key}"));
        self.kv_put(key, value);
        Ok(())
    }

    fn kv_delete(&self, _store: &str, key: &str) -> Result<(), String> {
        self.store()?;
        self.kv_ops.borrow_mut().push(format!("delete {key}"));
        self.kv_remove(key);
        Ok(())
    }

    fn kv_increment(&self, _store: &str, key: &str) -> Result<u64, String> {
        self.store()?;
        let mut kv = self.kv.borrow_mut();
        let current = match kv.get(key) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or("not an integer")?,
        };
        kv.insert(key.into(), (current + 1).to_string().into_bytes());
        Ok(current + 1)
    }

    fn log(&self, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
}

/// Settings for tests: a token URL, client id `svc` and secret `secret`, then `extra`
/// (which may override those).
pub(crate) fn all_settings(extra: &[(&str, &str)]) -> Settings {
    let base: &[(&str, &str)] = &[
        ("token_url", "https://auth.example.com/token"),
        ("client_id", "svc"),
        ("client_secret", "secret"),
    ];
    Settings::from_pairs(&[base, extra].concat()).expect("test settings are valid")
}

/// The provider's part of [`all_settings`].
pub(crate) fn settings(extra: &[(&str, &str)]) -> ProviderSettings {
    all_settings(extra).provider
}

/// The cache key of a request for `scopes`.
pub(crate) fn key_for(s: &ProviderSettings, scopes: &[&str]) -> CacheKey {
    let req = TokenRequest {
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    s.cache_key(&TokenParams::resolve(&req, &s.client).unwrap())
}

/// A token entry issued at 1000 s, valid for an hour.
pub(crate) fn entry() -> Entry {
    Entry {
        access_token: AccessToken::new("tok-123"),
        scopes: vec!["read".into()],
        issued_at_ms: 1_000_000,
        expires_at_ms: 4_600_000,
        dpop: None,
    }
}

/// A new P-256 private key, PKCS#8 PEM (for settings, which take `&str`s).
pub(crate) fn p256_pem() -> &'static str {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    Box::leak(pem.into_boxed_str())
}

/// A JWT with this JSON payload and a signature no one checks (a platform's token as
/// the component reads it: only the payload).
pub(crate) fn unsigned_jwt(payload: &str) -> String {
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        Base64UrlUnpadded::encode_string(payload.as_bytes())
    )
}

/// An HTTP response with these headers and body.
pub(crate) fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// The rig's start time: 2027-01-15T08:00:00Z.
pub(crate) const T0: u64 = 1_800_000_000_000;

/// One instance (settings, memory) on a fake platform at [`T0`].
pub(crate) struct Rig {
    pub(crate) settings: ProviderSettings,
    /// The authorized client's and the interceptor's settings.
    pub(crate) send: SendSettings,
    pub(crate) platform: FakePlatform,
    pub(crate) memory: RefCell<MemoryCache>,
}

impl Rig {
    pub(crate) fn new(extra: &[(&str, &str)]) -> Self {
        let Settings { provider, send } = all_settings(extra);
        Rig {
            settings: provider,
            send,
            platform: FakePlatform::at(T0),
            memory: RefCell::new(MemoryCache::default()),
        }
    }

    pub(crate) fn provider(&self) -> Provider<'_, FakePlatform> {
        Provider {
            settings: &self.settings,
            platform: &self.platform,
            memory: &self.memory,
        }
    }

    pub(crate) fn get(&self) -> Result<IssuedToken, Error> {
        crate::platform::ready(self.provider().get_token(&TokenRequest::default()))
    }

    pub(crate) fn key(&self) -> CacheKey {
        let params = TokenParams::resolve(&TokenRequest::default(), &self.settings.client).unwrap();
        self.settings.cache_key(&params)
    }

    /// Seal an entry as another instance would have stored it.
    pub(crate) fn sealed(&self, token: &str, issued_at_ms: u64, lifetime_secs: u64) -> Vec<u8> {
        let entry = Entry {
            access_token: AccessToken::new(token),
            scopes: vec![],
            issued_at_ms,
            expires_at_ms: issued_at_ms + lifetime_secs * 1000,
            dpop: None,
        };
        seal::seal(&entry, &self.settings.cache.secret, &self.key(), [3; 24])
    }

    /// Put a token in the store as another instance would have stored it.
    pub(crate) fn store_token(&self, token: &str, issued_at_ms: u64, lifetime_secs: u64) {
        self.platform.kv_put(
            &self.key().store_key(),
            &self.sealed(token, issued_at_ms, lifetime_secs),
        );
    }

    /// The lease counter of the slot that `at_ms` falls in (`lease_ms` 15 s if the
    /// lease is disabled).
    pub(crate) fn lease_key(&self, at_ms: u64) -> String {
        let lease_ms = match self.settings.cache.lease_ms {
            0 => 15_000,
            ms => ms,
        };
        self.key().lease(at_ms / lease_ms, 0)
    }

    /// Another instance's lease as it leaves it in the store: the counter of the slot
    /// `started_ms` falls in (generation 0) and its sealed holder record.
    pub(crate) fn plant_holder(&self, started_ms: u64) -> crate::provider::lease::Holder {
        self.plant_holder_of(&self.key(), started_ms)
    }

    /// [`Rig::plant_holder`] on the lease of `key` (another cache key's, or an
    /// issuer's discovery).
    pub(crate) fn plant_holder_of(
        &self,
        key: &CacheKey,
        started_ms: u64,
    ) -> crate::provider::lease::Holder {
        let lease_ms = self.settings.cache.lease_ms;
        let holder = crate::provider::lease::Holder {
            slot: started_ms / lease_ms,
            generation: 0,
            started_ms,
        };
        self.plant_holder_record(key, holder);
        holder
    }

    /// `holder`'s lease of `key` as its instance leaves it in the store: the counter of
    /// its slot and generation, and its sealed record (whatever its dates say).
    pub(crate) fn plant_holder_record(
        &self,
        key: &CacheKey,
        holder: crate::provider::lease::Holder,
    ) {
        let lease = key.lease(holder.slot, holder.generation);
        self.platform.kv_put(&lease, b"1");
        let sealed = self.sealed_record(&holder, key, crate::store::keys::roles::HOLDER);
        self.platform.kv_put(&key.lease_holder(), &sealed);
    }

    /// `value` sealed as `key`'s record of `role`, as another instance would store it.
    pub(crate) fn sealed_record<T: crate::store::record::Record>(
        &self,
        value: &T,
        key: &CacheKey,
        role: &str,
    ) -> Vec<u8> {
        seal::seal_value(
            value,
            &self.settings.cache.secret,
            &key.context(role),
            [4; 24],
        )
    }

    /// A discovery document for `issuer` naming `token_endpoint` (basic auth), fetched
    /// at `fetched_at_ms`, sealed: its store key and value.
    pub(crate) fn sealed_document(
        &self,
        issuer: &str,
        token_endpoint: &str,
        fetched_at_ms: u64,
    ) -> (String, Vec<u8>) {
        let key = self.settings.discovery_key(issuer);
        let doc = crate::oauth::metadata::Fetched {
            metadata: crate::oauth::metadata::Metadata {
                token_endpoint: token_endpoint.into(),
                auth_methods: vec!["client_secret_basic".into()],
                signing_algs: None,
            },
            fetched_at_ms,
        };
        let sealed = self.sealed_record(&doc, &key, crate::store::keys::roles::METADATA);
        (key.metadata(), sealed)
    }

    pub(crate) fn lease_keys(&self) -> Vec<String> {
        self.platform
            .kv_keys()
            .into_iter()
            .filter(|k| k.contains(":lease:") || k.contains(":holder:"))
            .collect()
    }
}

/// Poll `future` once (no waker: the tests poll again themselves).
pub(crate) fn poll_once<F: std::future::Future>(
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}
