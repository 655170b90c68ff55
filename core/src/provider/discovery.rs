//! The token endpoint and method when `issuer` is configured: the issuer's metadata
//! from this instance's memory, then (sealed) from the shared store, then from the
//! issuer itself (RFC 8414 first, then OpenID Connect Discovery), fetched by one
//! instance at a time per issuer on the store's lease while the others wait for it.
//! `crate::oauth::metadata` judges the document and picks the method (pure).

use super::lease::{Attempt, Leases, Look, Watch, look, poll_delay_ms};
use super::{Lookup, Provider};
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest};
use crate::oauth::client::DiscoverySettings;
use crate::oauth::client::Endpoint;
use crate::oauth::metadata::{self, Fetched, MAX_DOCUMENT_BYTES};
use crate::origin::parse_url;
use crate::platform::Platform;
use crate::store::record;
use crate::store::{CacheKey, seal};

impl<P: Platform> Provider<'_, P> {
    /// Where to ask for a token, and how to authenticate there.
    pub(super) async fn endpoint(&self, l: &Lookup) -> Result<Endpoint, Error> {
        if let Some(e) = self.settings.client.static_endpoint() {
            return Ok(e);
        }
        let Some(d) = &self.settings.client.discovery else {
            unreachable!("config requires token_url and a fixed method, or issuer");
        };
        let fetched = self.metadata(d, l).await?;
        fetched
            .metadata
            .endpoint(&self.settings.client)
            .map_err(|p| {
                let e = discovery_error(d, &p);
                self.audit(
                    &Event::new(
                        Outcome::DiscoveryError,
                        &self.settings.audit,
                        &l.params.scopes,
                    )
                    .with_error(&e),
                );
                e
            })
    }

    /// The metadata: remembered, stored, or fetched (once per issuer across the fleet).
    async fn metadata(&self, d: &DiscoverySettings, l: &Lookup) -> Result<Fetched, Error> {
        let now = self.platform.now_unix_ms();
        if let Some(f) = &self.memory.borrow().discovered
            && f.fresh(now, d.ttl_secs)
        {
            return Ok(f.clone());
        }
        let key = self.settings.discovery_key(&d.issuer);
        let fetched = match self.settings.cache.kv_store.as_deref() {
            None => self.fetch_metadata(d, l).await?,
            Some(store) => match self.stored_metadata(store, &key, d, l) {
                Some(f) => f,
                None => self.metadata_single_flight(store, &key, d, l).await?,
            },
        };
        self.memory.borrow_mut().discovered = Some(fetched.clone());
        Ok(fetched)
    }

    fn stored_metadata(
        &self,
        store: &str,
        key: &CacheKey,
        d: &DiscoverySettings,
        l: &Lookup,
    ) -> Option<Fetched> {
        match self.platform.kv_get(store, &key.metadata()) {
            Ok(Some(bytes)) => seal::open_value::<Fetched>(
                &bytes,
                &self.settings.cache.secret,
                &key.context(crate::store::keys::roles::METADATA),
            )
            .ok()
            .filter(|f| {
                let now = self.platform.now_unix_ms();
                let tolerance = self.settings.cache.clock_tolerance_ms();
                if let Err(by) = crate::store::ahead::started(f.fetched_at_ms, now, tolerance) {
                    self.ahead_of_clock(&l.params.scopes, "discovery", f.fetched_at_ms, by);
                    return false;
                }
                f.fresh(now, d.ttl_secs) && self.accepted_from_store(f, d, l)
            }),
            Ok(None) => None,
            Err(e) => {
                self.store_error(&l.params, e);
                None
            }
        }
    }

    /// Whether a document read from the store passes the judgment a fetched one gets
    /// here: an instance with other settings (`allow_insecure_http`,
    /// `token_endpoint_origin`) sharing the credential and the store may have written
    /// it. One this instance would refuse is a miss (audited once per document and
    /// instance): it fetches its own.
    fn accepted_from_store(&self, f: &Fetched, d: &DiscoverySettings, l: &Lookup) -> bool {
        let Err(problem) = d.accepts(&f.metadata, self.settings.http.allow_insecure_http) else {
            return true;
        };
        if !self.first_time("discovery-refused", f.fetched_at_ms) {
            return false;
        }
        let mut ev = Event::new(
            Outcome::CacheRejected,
            &self.settings.audit,
            &l.params.scopes,
        )
        .with_detail(&format!("discovery record refused: {problem}"));
        ev.cache = Some(super::Source::Store.as_str());
        self.audit(&ev);
        false
    }

    /// One instance fetches; the others poll the store for its document until its
    /// lease is up, then fetch it themselves.
    async fn metadata_single_flight(
        &self,
        store: &str,
        key: &CacheKey,
        d: &DiscoverySettings,
        l: &Lookup,
    ) -> Result<Fetched, Error> {
        let Some(leases) = self.leases_of(store, key, &l.params.scopes) else {
            return self.fetch_and_store(store, key, d, l).await;
        };
        let watch = match leases.try_acquire(leases.current_slot(), 0) {
            Ok(Attempt::Held(own)) => {
                let result = match self.stored_metadata(store, key, d, l) {
                    Some(f) => Ok(f),
                    None => self.fetch_and_store(store, key, d, l).await,
                };
                if let Err(e) = leases.release(&own) {
                    self.store_error(&l.params, e);
                }
                return result;
            }
            Ok(Attempt::Queued { own, watch }) => {
                if let Err(e) = leases.release_queued(&own) {
                    self.store_error(&l.params, e);
                }
                watch
            }
            Ok(Attempt::Busy(watch)) => watch,
            Err(e) => {
                self.store_error(&l.params, e);
                return self.fetch_and_store(store, key, d, l).await;
            }
        };
        if let Some(f) = self
            .wait_for_metadata(&leases, watch, (store, key), d, l)
            .await
        {
            return Ok(f);
        }
        // A holder that failed wrote the cooldown before it gave the lease back: an
        // issuer outage costs the fleet one GET, not one per waiter.
        if let Some(e) = self.cooling_down(&l.params) {
            return Err(e);
        }
        self.fetch_and_store(store, key, d, l).await
    }

    /// Poll for the holder's document until it is stored (`Some`), or the holder gives
    /// the lease back without one (it failed) or its time is up (`None`: fetch it here).
    async fn wait_for_metadata(
        &self,
        leases: &Leases<'_, P>,
        watch: Watch,
        (store, key): (&str, &CacheKey),
        d: &DiscoverySettings,
        l: &Lookup,
    ) -> Option<Fetched> {
        let until = self
            .platform
            .monotonic_ms()
            .saturating_add(watch.wait_ms.min(leases.lease_ms));
        let mut polls = 0;
        loop {
            let left = until.saturating_sub(self.platform.monotonic_ms());
            self.platform
                .sleep_ms(poll_delay_ms(self.platform, polls).min(left))
                .await;
            polls += 1;
            if let Some(f) = self.stored_metadata(store, key, d, l) {
                return Some(f);
            }
            let left = until.saturating_sub(self.platform.monotonic_ms());
            let record = match leases.holder_record() {
                Ok(r) => r,
                Err(e) => {
                    self.store_error(&l.params, e);
                    return None;
                }
            };
            if look(&watch, record, left) != Look::Wait {
                return None;
            }
        }
    }

    async fn fetch_and_store(
        &self,
        store: &str,
        key: &CacheKey,
        d: &DiscoverySettings,
        l: &Lookup,
    ) -> Result<Fetched, Error> {
        let fetched = self.fetch_metadata(d, l).await?;
        let sealed = seal::seal_value(
            &fetched,
            &self.settings.cache.secret,
            &key.context(crate::store::keys::roles::METADATA),
            seal::nonce(self.platform),
        );
        if let Err(e) = self.platform.kv_set(store, &key.metadata(), &sealed) {
            self.store_error(&l.params, e);
        }
        Ok(fetched)
    }

    /// GET the RFC 8414 document, and the OpenID one if there is none (a 4xx); judge
    /// it; one audit line either way. A failure that starts a cooldown starts it here,
    /// before a lease holder gives its lease back, so its waiters see it.
    async fn fetch_metadata(&self, d: &DiscoverySettings, l: &Lookup) -> Result<Fetched, Error> {
        let started = self.platform.monotonic_ms();
        let result = self.fetch_document(d).await;
        if let Err(e) = &result {
            self.start_cooldown(&l.params, e, None);
        }
        let mut ev = match &result {
            Ok((f, from)) => {
                Event::new(Outcome::DiscoveryOk, &self.settings.audit, &l.params.scopes)
                    .with_detail(&format!(
                        "{from}: token endpoint {}, methods {}",
                        crate::error::sanitize(&f.metadata.token_endpoint, 200),
                        crate::error::sanitize(&f.metadata.auth_methods.join(" "), 300),
                    ))
            }
            Err(e) => Event::new(
                Outcome::DiscoveryError,
                &self.settings.audit,
                &l.params.scopes,
            )
            .with_error(e),
        };
        ev.duration_ms = Some(self.platform.monotonic_ms().saturating_sub(started));
        self.audit(&ev);
        result.map(|(f, _)| f)
    }

    /// The document and the URL it came from.
    async fn fetch_document(&self, d: &DiscoverySettings) -> Result<(Fetched, String), Error> {
        let options = HttpOptions {
            timeout_ms: self.settings.http.timeout_ms,
            read_limit: MAX_DOCUMENT_BYTES + 1,
        };
        let urls = metadata::well_known_urls(&d.issuer_url);
        let mut last = None;
        for url in urls {
            let request = HttpRequest {
                method: "GET".into(),
                url: parse_url(&url).map_err(|e| Error::config("issuer", e))?,
                headers: vec![("accept".into(), b"application/json".to_vec())],
                body: Vec::new(),
            };
            let sent_at = self.platform.now_unix_ms();
            let response = self.platform.send(&request, options).await?;
            match response.status {
                200 => {
                    let insecure = self.settings.http.allow_insecure_http;
                    let metadata = metadata::parse(&response.body, &d.issuer, insecure)
                        .and_then(|m| d.accepts(&m, insecure).map(|()| m))
                        .map_err(|p| discovery_error(d, &p))?;
                    let fetched = Fetched {
                        metadata,
                        fetched_at_ms: sent_at,
                    };
                    return Ok((fetched, url));
                }
                // Not here (or not for us): the other place.
                400..=499 if response.status != 429 => last = Some(response.status),
                status => {
                    return Err(Error::Server {
                        status,
                        message: format!("discovery: {url} answered HTTP {status}"),
                    });
                }
            }
        }
        Err(Error::Server {
            status: last.unwrap_or(404),
            message: format!(
                "discovery: no metadata for issuer `{}` at its RFC 8414 or OpenID Connect well-known URL",
                crate::error::sanitize(&d.issuer, 200)
            ),
        })
    }
}

/// A refused document as the caller sees it: an unusable response, naming the issuer.
fn discovery_error(d: &DiscoverySettings, problem: &metadata::Problem) -> Error {
    Error::InvalidResponse(format!(
        "discovery for issuer `{}`: {problem}",
        crate::error::sanitize(&d.issuer, 200)
    ))
}

/// Discovered metadata as the store keeps it (sealed, role `metadata`).
impl record::Record for Fetched {
    fn from_fields(f: &record::Fields) -> Option<Self> {
        let m = record::Fields::of(f.value("metadata")?)?;
        Some(Fetched {
            metadata: metadata::Metadata {
                token_endpoint: m.string("token_endpoint")?,
                auth_methods: m.strings("auth_methods")?,
                signing_algs: match m.value("signing_algs")? {
                    serde_json::Value::Null => None,
                    _ => Some(m.strings("signing_algs")?),
                },
            },
            fetched_at_ms: f.u64("fetched_at_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::platform::ready;
    use crate::store::seal;
    use crate::testing::{Rig, T0, response};

    const ISSUER: &str = "https://login.example.com/t1";

    fn rig(extra: &[(&str, &str)]) -> Rig {
        Rig::new(&[&[("token_url", ""), ("issuer", ISSUER)], extra].concat())
    }

    fn document(issuer: &str, methods: &str) -> crate::http_types::HttpResponse {
        response(
            200,
            &[("content-type", "application/json")],
            &format!(
                r#"{{"issuer":"{issuer}","token_endpoint":"https://login.example.com/t1/oauth2/token","token_endpoint_auth_methods_supported":{methods}}}"#
            ),
        )
    }

    fn urls(r: &Rig) -> Vec<String> {
        r.platform
            .sent
            .borrow()
            .iter()
            .map(|q| format!("{} {}{}", q.method, q.url.authority, q.url.path_and_query))
            .collect()
    }

    #[test]
    fn the_endpoint_is_discovered_once_then_remembered_and_shared() {
        let r = rig(&[("auth_method", "auto")]);
        r.platform.respond(Ok(response(404, &[], "not found")));
        r.platform.respond(Ok(document(
            ISSUER,
            r#"["client_secret_post","client_secret_jwt"]"#,
        )));
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(
            urls(&r),
            [
                "GET login.example.com/.well-known/oauth-authorization-server/t1",
                "GET login.example.com/t1/.well-known/openid-configuration",
                "POST login.example.com/t1/oauth2/token",
            ]
        );
        // auto chose client_secret_jwt (stronger than _post), aud the token endpoint.
        let body = String::from_utf8(r.platform.sent.borrow()[2].body.clone()).unwrap();
        assert!(body.contains("client_assertion="), "{body}");
        let ok = r.platform.events("issuer.discovery");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0]["outcome"], "ok");
        assert!(
            ok[0]["detail"]
                .as_str()
                .unwrap()
                .contains("openid-configuration")
        );

        // A forced renewal on this instance: from memory, no discovery request.
        r.platform.respond_token("T2", 3600);
        let forced = crate::oauth::request::TokenRequest {
            force_refresh: true,
            ..Default::default()
        };
        ready(r.provider().get_token(&forced)).unwrap();
        assert_eq!(urls(&r).len(), 4);

        // Another instance on the same store: the sealed document, no discovery request.
        let other = crate::testing::Rig {
            memory: Default::default(),
            ..rig(&[("auth_method", "auto")])
        };
        for k in r.platform.kv_keys() {
            other.platform.kv_put(&k, &r.platform.kv_value(&k).unwrap());
        }
        other.platform.respond_token("T3", 3600);
        let forced_other = ready(other.provider().get_token(&forced)).unwrap();
        assert_eq!(forced_other.token.expose(), "T3");
        assert_eq!(urls(&other), ["POST login.example.com/t1/oauth2/token"]);

        // After discovery_ttl_secs (a day), fetched again.
        other.platform.advance(86_400_000);
        other
            .platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        other.platform.respond_token("T4", 3600);
        ready(other.provider().get_token(&forced)).unwrap();
        assert_eq!(
            urls(&other)[1],
            "GET login.example.com/.well-known/oauth-authorization-server/t1"
        );
        let last = other.platform.sent.borrow()[2].clone();
        assert!(
            last.headers.iter().any(|(n, _)| n == "authorization"),
            "now client_secret_basic"
        );
    }

    #[test]
    fn a_mismatched_issuer_is_refused_and_no_token_is_asked_for() {
        let r = rig(&[]);
        r.platform.respond(Ok(document(
            "https://evil.example/t1",
            r#"["client_secret_basic"]"#,
        )));
        let e = r.get().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidResponse(m) if m.contains("issuer `https://evil.example/t1` is not the configured `https://login.example.com/t1`")),
            "{e:?}"
        );
        assert_eq!(urls(&r).len(), 1, "no fallback, no token request");
        assert_eq!(r.platform.events("issuer.discovery")[0]["outcome"], "error");
        // Nothing was stored for the next instance to trust.
        assert!(
            r.platform
                .kv_keys()
                .iter()
                .all(|k| !k.contains(":metadata:"))
        );
    }

    #[test]
    fn an_outage_is_not_mistaken_for_a_missing_document() {
        let r = rig(&[]);
        r.platform.respond(Ok(response(503, &[], "down")));
        let e = r.get().unwrap_err();
        assert!(matches!(e, Error::Server { status: 503, .. }), "{e:?}");
        assert_eq!(
            urls(&r).len(),
            1,
            "a 5xx does not fall back to the OpenID URL"
        );
        let r = rig(&[]);
        r.platform.respond(Ok(response(404, &[], "")));
        r.platform.respond(Ok(response(404, &[], "")));
        let e = r.get().unwrap_err();
        assert!(
            matches!(&e, Error::Server { status: 404, message } if message.contains("no metadata")),
            "{e:?}"
        );
    }

    #[test]
    fn a_document_planted_without_the_credential_is_not_used() {
        let r = rig(&[]);
        let key = r.settings.discovery_key(ISSUER);
        let forged = crate::oauth::metadata::Fetched {
            metadata: crate::oauth::metadata::Metadata {
                token_endpoint: "https://evil.example/token".into(),
                auth_methods: vec!["client_secret_post".into()],
                signing_algs: None,
            },
            fetched_at_ms: T0,
        };
        let other = crate::secret::Secret::new("not the client's secret");
        let context = key.context(crate::store::keys::roles::METADATA);
        r.platform.kv_put(
            &key.metadata(),
            &seal::seal_value(&forged, &other, &context, [9; 24]),
        );
        r.platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        r.platform.respond_token("T1", 3600);
        r.get().unwrap();
        let sent = urls(&r);
        assert_eq!(
            sent[0],
            "GET login.example.com/.well-known/oauth-authorization-server/t1"
        );
        assert_eq!(
            sent[1], "POST login.example.com/t1/oauth2/token",
            "not the planted endpoint"
        );
    }

    #[test]
    fn while_another_instance_discovers_this_one_waits_for_its_document() {
        let r = rig(&[]);
        // Another instance holds the discovery lease and stores the document a moment
        // later.
        let key = r.settings.discovery_key(ISSUER);
        r.plant_holder_of(&key, T0);
        let endpoint = "https://login.example.com/t1/oauth2/token";
        let (name, sealed) = r.sealed_document(ISSUER, endpoint, T0);
        r.platform.on_sleep(move |p| {
            if p.slept_ms.get() >= 40 {
                p.kv_put(&name, &sealed);
            }
        });
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(
            urls(&r),
            ["POST login.example.com/t1/oauth2/token"],
            "no discovery request of its own"
        );
    }

    #[test]
    fn a_holder_that_gives_up_is_not_waited_for_to_the_end() {
        let r = rig(&[]);
        let key = r.settings.discovery_key(ISSUER);
        let holder = r.plant_holder_of(&key, T0);
        // The holder's discovery fails: it gives the lease back with no document.
        let (counter, record) = (key.lease(holder.slot, 0), key.lease_holder());
        r.platform.on_sleep(move |p| {
            if p.slept_ms.get() >= 30 {
                p.kv_remove(&counter);
                p.kv_remove(&record);
            }
        });
        r.platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert!(
            r.platform.slept_ms.get() < 1_000,
            "waited {} ms of a {} ms lease",
            r.platform.slept_ms.get(),
            r.settings.cache.lease_ms
        );
        assert_eq!(
            urls(&r)[0],
            "GET login.example.com/.well-known/oauth-authorization-server/t1"
        );
    }

    #[test]
    fn a_slow_discovery_leaves_the_token_request_its_whole_deadline() {
        // Each exchange takes 7 s: the two discovery GETs 14 s, more than
        // token_deadline_ms (12 s), which is the token request's alone.
        let r = rig(&[]);
        r.platform.send_ms.set(7_000);
        r.platform.respond(Ok(response(404, &[], "")));
        r.platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(urls(&r).len(), 3);
    }

    #[test]
    fn an_issuer_outage_costs_the_fleet_the_holders_get_and_no_more() {
        let r = rig(&[]);
        let key = r.settings.discovery_key(ISSUER);
        let holder = r.plant_holder_of(&key, T0);
        // The holder's GET fails: as a holder does, it shares the outage cooldown, then
        // gives its lease back.
        let cooldown = super::super::failure::Cooldown::after(
            &Error::Server {
                status: 503,
                message: "discovery: down".into(),
            },
            &r.settings.retry,
            None,
            T0,
        )
        .unwrap();
        let failure = r.settings.client_key();
        let sealed = r.sealed_record(&cooldown, &failure, crate::store::keys::roles::FAILURE);
        let (counter, record) = (key.lease(holder.slot, 0), key.lease_holder());
        r.platform.on_sleep(move |p| {
            if p.slept_ms.get() >= 30 && p.kv_value(&record).is_some() {
                p.kv_put(&failure.failure(), &sealed);
                p.kv_remove(&counter);
                p.kv_remove(&record);
            }
        });
        // Five waiting instances (their own memory, one store): none sends anything.
        for i in 0..5 {
            let memory = std::cell::RefCell::new(crate::provider::instance::MemoryCache::default());
            let p = crate::provider::Provider {
                settings: &r.settings,
                platform: &r.platform,
                memory: &memory,
            };
            let e = ready(p.get_token(&Default::default())).unwrap_err();
            assert!(e.to_string().contains("failing fast"), "instance {i}: {e}");
        }
        assert_eq!(urls(&r), Vec::<String>::new());
    }

    #[test]
    fn a_discovery_holder_that_fails_shares_the_cooldown_before_it_gives_the_lease_back() {
        let r = rig(&[]);
        r.platform.respond(Ok(response(503, &[], "down")));
        assert!(matches!(r.get(), Err(Error::Server { status: 503, .. })));
        let key = r.settings.discovery_key(ISSUER);
        let ops = r.platform.kv_ops.borrow().clone();
        let at = |op: &str| {
            ops.iter()
                .position(|o| o == op)
                .unwrap_or_else(|| panic!("{op} in {ops:?}"))
        };
        let cooldown = at(&format!("set {}", r.settings.client_key().failure()));
        let released = at(&format!("delete {}", key.lease_holder()));
        assert!(cooldown < released, "{ops:?}");
    }

    fn plant_document(r: &Rig, token_endpoint: &str) {
        let (name, sealed) = r.sealed_document(ISSUER, token_endpoint, T0);
        r.platform.kv_put(&name, &sealed);
    }

    #[test]
    fn a_stored_document_this_instance_would_refuse_is_a_miss() {
        // A staging deployment (allow_insecure_http) with the same credential and
        // store wrote an http:// token endpoint: this instance must not send the
        // secret there.
        let r = rig(&[]);
        plant_document(&r, "http://login.example.com/t1/oauth2/token");
        r.platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(
            urls(&r),
            [
                "GET login.example.com/.well-known/oauth-authorization-server/t1",
                "POST login.example.com/t1/oauth2/token"
            ]
        );
        assert!(r.platform.sent.borrow()[1].url.origin.scheme == crate::origin::Scheme::Https);
        let refused = r.platform.events("token.cache");
        assert!(
            refused.iter().any(|e| e["detail"].as_str().is_some_and(
                |d| d.contains("discovery record refused: token_endpoint is plain http://")
            )),
            "{refused:?}"
        );
        // Same for one on another origin than the issuer's.
        let r = rig(&[]);
        plant_document(&r, "https://elsewhere.example.net/token");
        r.platform
            .respond(Ok(document(ISSUER, r#"["client_secret_basic"]"#)));
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(urls(&r)[1], "POST login.example.com/t1/oauth2/token");
    }

    #[test]
    fn the_discovered_token_endpoint_stays_on_the_issuers_origin_unless_any_is_set() {
        let foreign = |r: &Rig| {
            r.platform.respond(Ok(response(
                200,
                &[("content-type", "application/json")],
                &format!(
                    r#"{{"issuer":"{ISSUER}","token_endpoint":"https://oauth2.example.net/token"}}"#
                ),
            )));
        };
        let r = rig(&[]);
        foreign(&r);
        let e = r.get().unwrap_err();
        assert_eq!(e.kind(), "invalid_response", "{e}");
        assert!(
            e.to_string()
                .contains("is not on the issuer's origin https://login.example.com:443"),
            "{e}"
        );
        assert_eq!(urls(&r).len(), 1, "no token request");
        let r = rig(&[("token_endpoint_origin", "any")]);
        foreign(&r);
        r.platform.respond_token("T1", 3600);
        assert_eq!(r.get().unwrap().token.expose(), "T1");
        assert_eq!(urls(&r)[1], "POST oauth2.example.net/token");
        // The origin is compared whole: another port is another origin.
        let r = rig(&[]);
        r.platform.respond(Ok(response(
            200,
            &[],
            &format!(
                r#"{{"issuer":"{ISSUER}","token_endpoint":"https://login.example.com:8443/token"}}"#
            ),
        )));
        assert!(
            r.get()
                .unwrap_err()
                .to_string()
                .contains("not on the issuer's origin")
        );
    }

    #[test]
    fn an_issuer_that_is_down_starts_the_outage_cooldown() {
        let r = rig(&[]);
        r.platform.respond(Ok(response(503, &[], "down")));
        assert!(matches!(r.get(), Err(Error::Server { status: 503, .. })));
        // Moments later: failing fast, no request.
        let e = r.get().unwrap_err();
        assert!(e.to_string().contains("failing fast"), "{e}");
        assert_eq!(urls(&r).len(), 1);
    }
}
