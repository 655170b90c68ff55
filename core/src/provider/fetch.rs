//! One token request, with retries (`retry::next` decides), within
//! `token_deadline_ms`; a usable answer is kept in memory and the store.

use super::{IssuedToken, Lookup, Provider, Source};
use crate::audit::{Event, Outcome};
use crate::error::Error;
use crate::http_types::{HttpOptions, HttpRequest};
use crate::oauth::client::Grant;
use crate::oauth::dpop::{self, DpopKey};
use crate::oauth::request;
use crate::oauth::response::{self, MAX_TOKEN_RESPONSE_BYTES, TokenResponse};
use crate::platform::Platform;
use crate::retry::{self, Next};
use crate::store::Entry;

/// A successful attempt.
struct Answer {
    status: u16,
    token: TokenResponse,
    /// 1 = the first.
    attempt: u32,
    duration_ms: u64,
    /// Wall clock when this attempt was sent: the token's lifetime counts from here,
    /// not from when a slow response finished.
    sent_at_ms: u64,
    /// How the client authenticated.
    method: crate::oauth::client::AuthMethod,
    /// The DPoP binding of the token (`None`: Bearer).
    dpop: Option<crate::store::entry::Binding>,
}

impl<P: Platform> Provider<'_, P> {
    /// Ask the token endpoint, with retries, unless a credential rejection is cooling
    /// down.
    pub(super) async fn fetch(&self, l: &Lookup) -> Result<IssuedToken, Error> {
        if let Some(e) = self.cooling_down(&l.params) {
            return Err(e);
        }
        let answer = self.request_with_retries(l).await?;
        let now = self.platform.now_unix_ms();
        let sent = answer.sent_at_ms;
        let entry = Entry {
            access_token: answer.token.access_token,
            scopes: answer.token.scopes,
            issued_at_ms: sent,
            expires_at_ms: sent.saturating_add(answer.token.expires_in.saturating_mul(1000)),
            dpop: answer.dpop,
        };
        let mut ev = Event::new(Outcome::FetchOk, &self.settings.audit, &entry.scopes);
        if let Some(why) = answer.token.expires_in_ignored {
            ev = ev.with_detail(&format!(
                "expires_in {why}; the token is kept for default_expires_in_secs"
            ));
        }
        ev.status = Some(answer.status);
        ev.duration_ms = Some(answer.duration_ms);
        ev.attempt = Some(answer.attempt);
        ev.grant = Some(self.settings.client.grant.as_str());
        ev.auth_method = Some(answer.method.as_str());
        ev.fingerprint = Some(entry.access_token.fingerprint());
        ev.expires_at = Some(entry.expires_at_secs());
        self.audit(&ev);

        let fresh = IssuedToken::from_entry(&entry, Source::Fresh);
        if entry.is_usable(now, self.settings.cache.expiry_skew_secs) {
            let stored = self.write_store(l, &entry);
            let checked = self.platform.monotonic_ms();
            self.memory
                .borrow_mut()
                .put(l.key.clone(), entry, checked, stored);
        }
        Ok(fresh)
    }

    async fn request_with_retries(&self, l: &Lookup) -> Result<Answer, Error> {
        // The endpoint first (discovery has its own timeouts, and starts the cooldown
        // when the issuer fails): `token_deadline_ms` is the token request's.
        let endpoint = self.endpoint(l).await?;
        let dpop = self.fetch_key(l)?;
        // Nonces are the token endpoint's own (an API on the same origin has others).
        let origin = format!("token endpoint {}", endpoint.url.origin);
        let deadline = self
            .platform
            .monotonic_ms()
            .saturating_add(self.settings.retry.token_deadline_ms);
        let mut attempt = 0u32;
        // A `use_dpop_nonce` answer is tried again at once with the new nonce, once.
        let mut nonce_retried = false;
        loop {
            let started = self.platform.monotonic_ms();
            let sent_at_ms = self.platform.now_unix_ms();
            // Built for each attempt: a client assertion (or proof) is never sent twice.
            let nonce = dpop.as_ref().and_then(|_| self.dpop_nonce(&origin));
            let proof = dpop.as_ref().map(|key| request::DpopProof {
                key,
                nonce: nonce.as_deref(),
            });
            let request = self.request_for(&endpoint, l, sent_at_ms, proof)?;
            let left_ms = deadline.saturating_sub(started);
            let (outcome, retry_after) = self.attempt(&request, l, left_ms, &origin).await;
            let now = self.platform.monotonic_ms();
            let duration_ms = now.saturating_sub(started);
            let e = match outcome {
                Ok((status, token, bound)) => {
                    return Ok(Answer {
                        status,
                        token,
                        attempt: attempt + 1,
                        duration_ms,
                        sent_at_ms,
                        method: endpoint.method,
                        dpop: Self::binding(dpop.as_ref(), bound),
                    });
                }
                Err(e) => e,
            };
            let new_nonce = dpop.is_some() && self.dpop_nonce(&origin) != nonce;
            let Some(e) = after_nonce_request(e, dpop.is_some(), nonce_retried, new_nonce) else {
                nonce_retried = true;
                continue;
            };
            let failed = (attempt, duration_ms, retry_after);
            self.after_failure(l, endpoint.method, e, failed, (now, deadline))
                .await?;
            attempt += 1;
        }
    }

    /// An attempt failed with `e`: audit it and, if `retry::next` says so, wait for the
    /// next (`Ok`); else start the cooldown and give the error back.
    async fn after_failure(
        &self,
        l: &Lookup,
        method: crate::oauth::client::AuthMethod,
        e: Error,
        (attempt, duration_ms, retry_after): (u32, u64, Option<u64>),
        (now, deadline): (u64, u64),
    ) -> Result<(), Error> {
        let policy = self.settings.retry.policy;
        let next = retry::next(&policy, attempt, &e, retry_after, now, deadline, |n| {
            self.platform.random_below(n)
        });
        let outcome = match next {
            Next::RetryIn(_) => Outcome::FetchRetry,
            Next::Stop(_) => Outcome::FetchError,
        };
        let mut ev = Event::new(outcome, &self.settings.audit, &l.params.scopes).with_error(&e);
        ev.duration_ms = Some(duration_ms);
        ev.attempt = Some(attempt + 1);
        ev.grant = Some(self.settings.client.grant.as_str());
        ev.auth_method = Some(method.as_str());
        if let Next::RetryIn(ms) = next {
            ev.retry_in_ms = Some(ms);
            self.audit(&ev);
            self.platform.sleep_ms(ms).await;
            return Ok(());
        }
        self.audit(&ev);
        self.start_cooldown(&l.params, &e, retry_after);
        Err(e)
    }

    /// The DPoP key this fetch binds its token to (`None`: `dpop = off`).
    fn fetch_key(&self, l: &Lookup) -> Result<Option<DpopKey>, Error> {
        let key = self.dpop_key_to_fetch_with(l);
        if self.settings.client.dpop.is_some() && key.is_none() {
            return Err(Error::Refused(
                "dpop: the host's random source gave no P-256 key in 8 draws".into(),
            ));
        }
        Ok(key)
    }

    /// The token request of one attempt sent at `sent_at_ms`: a new `jti` (and RSA
    /// randomness) from the platform; an expired federated assertion is an error (and
    /// a `token.fetch` `error` line), with nothing sent.
    fn request_for(
        &self,
        endpoint: &crate::oauth::client::Endpoint,
        l: &Lookup,
        sent_at_ms: u64,
        dpop: Option<request::DpopProof<'_>>,
    ) -> Result<HttpRequest, Error> {
        let mut jti = [0u8; 16];
        self.platform.random_bytes(&mut jti);
        let random = |out: &mut [u8]| self.platform.random_bytes(out);
        let fresh = request::Fresh {
            now_secs: sent_at_ms / 1000,
            jti,
            random: &random,
        };
        request::build(&self.settings.client, endpoint, &l.params, fresh, dpop).inspect_err(|e| {
            let mut ev = Event::new(Outcome::FetchError, &self.settings.audit, &l.params.scopes)
                .with_error(e);
            ev.grant = Some(self.settings.client.grant.as_str());
            ev.auth_method = Some(endpoint.method.as_str());
            self.audit(&ev);
        })
    }

    /// One request, its timeouts cut to `left_ms` (what is left of the deadline); also
    /// the answer's `Retry-After`, if any. A `DPoP-Nonce` in the answer (`dpop = on`)
    /// is kept for `origin`, whatever the status. A token comes with whether it is
    /// bound to the DPoP key (`response::bound`).
    async fn attempt(
        &self,
        request: &HttpRequest,
        l: &Lookup,
        left_ms: u64,
        origin: &str,
    ) -> (Result<(u16, TokenResponse, bool), Error>, Option<u64>) {
        let options = HttpOptions {
            timeout_ms: self.settings.http.timeout_ms.min(left_ms).max(1),
            read_limit: MAX_TOKEN_RESPONSE_BYTES + 1,
        };
        let mut retry_after = None;
        let outcome = self.platform.send(request, options).await.and_then(|resp| {
            retry_after = resp
                .header("retry-after")
                .and_then(|v| retry::retry_after_ms(v, self.platform.now_unix_ms()));
            if self.settings.client.dpop.is_some()
                && let Some(nonce) = dpop::response_nonce(&resp)
            {
                self.keep_dpop_nonce(origin, nonce);
            }
            let token = response::parse(&resp, &l.params.scopes, self.settings.cache.lifetimes)
                .map_err(|e| response::with_scope_asked(e, &l.params.scopes))?;
            if let Grant::TokenExchange(_) = self.settings.client.grant {
                response::exchanged(token.issued_token_type.as_deref())?;
            }
            let bound = response::bound(token.token_type, self.settings.client.dpop.as_ref())?;
            Ok((resp.status, token, bound))
        });
        (outcome, retry_after)
    }
}

/// The token endpoint asks for a DPoP nonce (RFC 9449 §8): `use_dpop_nonce`.
fn asks_for_nonce(e: &Error) -> bool {
    matches!(e, Error::OAuth(o) if o.error == "use_dpop_nonce")
}

/// After a failed attempt (pure): `None` to send again at once with the nonce the
/// server has just sent (`new_nonce`), once per fetch; else the error, with our words
/// when a `use_dpop_nonce` cannot be met.
fn after_nonce_request(e: Error, dpop: bool, retried: bool, new_nonce: bool) -> Option<Error> {
    match (dpop && asks_for_nonce(&e), retried) {
        (true, false) if new_nonce => None,
        (true, true) => Some(with_nonce_detail(e, NONCE_LOOP)),
        (true, false) => Some(with_nonce_detail(e, NO_USABLE_NONCE)),
        (false, _) => Some(e),
    }
}

/// A second `use_dpop_nonce` in a row.
const NONCE_LOOP: &str = "the token endpoint asked for a new DPoP nonce again right after \
    the retry with the one it sent; not tried again";

/// A `use_dpop_nonce` without a nonce that may be sent back.
const NO_USABLE_NONCE: &str = "the token endpoint asked for a DPoP nonce but sent none that \
    may be used (no DPoP-Nonce header, or one that is empty, over 512 bytes, or has \
    characters RFC 9449 does not allow)";

/// A `use_dpop_nonce` error that is not tried again, and why (our words, not the
/// server's description).
fn with_nonce_detail(e: Error, why: &str) -> Error {
    match e {
        Error::OAuth(mut o) => {
            o.description = Some(why.into());
            Error::OAuth(o)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Rig, T0, response};

    #[test]
    fn the_lifetime_counts_from_when_the_request_was_sent() {
        // A 100 s token from a server that took 5 s to answer expires 100 s after the
        // request went out, not 105 s.
        let rig = Rig::new(&[("kv_store", "")]);
        rig.platform.send_ms.set(5_000);
        rig.platform.respond_token("slow", 100);
        let t = rig.get().unwrap();
        assert_eq!(t.expires_at, (T0 + 100_000) / 1000);
    }

    #[test]
    fn an_unusable_expires_in_means_the_default_lifetime_and_an_audit_note() {
        let rig = Rig::new(&[("kv_store", ""), ("default_expires_in_secs", "120")]);
        rig.platform.respond(Ok(response(
            200,
            &[],
            r#"{"access_token":"zero","expires_in":0}"#,
        )));
        let t = rig.get().unwrap();
        assert_eq!(t.expires_at, (T0 + 120_000) / 1000);
        let ok = &rig.platform.events("token.fetch")[0];
        assert_eq!(ok["outcome"], "ok");
        assert_eq!(
            ok["detail"],
            "expires_in is 0; the token is kept for default_expires_in_secs"
        );
        // Cached: the next call is a memory hit, not another request.
        assert_eq!(rig.get().unwrap().token.expose(), "zero");
        assert_eq!(rig.platform.sent.borrow().len(), 1);
    }

    #[test]
    fn a_503_is_retried_with_jittered_backoff_and_then_succeeds() {
        let rig = Rig::new(&[]);
        rig.platform.respond(Ok(response(503, &[], "busy")));
        rig.platform
            .respond(Err(Error::Transport("connection reset".into())));
        rig.platform.respond_token("third-time", 100);
        let t = rig.get().unwrap();
        assert_eq!(t.token.expose(), "third-time");
        assert_eq!(rig.platform.sent.borrow().len(), 3);
        // Full jitter under 200 ms, then under 400 ms.
        assert!(
            rig.platform.slept_ms.get() <= 600,
            "{}",
            rig.platform.slept_ms.get()
        );
        let fetches = rig.platform.events("token.fetch");
        let outcomes: Vec<_> = fetches
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap(),
                    e["attempt"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(outcomes, [("retry", 1), ("retry", 2), ("ok", 3)]);
        assert!(fetches[0]["retry_in_ms"].as_u64().unwrap() <= 200);
        assert!(fetches.iter().all(|e| e["grant"] == "client_credentials"));
    }

    /// A token exchange answered without `issued_token_type`, or with an ID token: an
    /// `invalid-response` error, and nothing cached.
    #[test]
    fn a_token_exchange_answer_that_issues_no_access_token_is_refused() {
        let jwt = crate::testing::unsigned_jwt(r#"{"sub":"app","exp":4102444800}"#);
        let rig = Rig::new(&[("grant", "token_exchange"), ("subject_token", &jwt)]);
        rig.platform.respond_token("no-type", 100);
        let e = rig.get().unwrap_err();
        assert!(
            e.to_string().contains("issued_token_type is missing"),
            "{e}"
        );
        let refused = |body: &str| {
            rig.platform.respond(Ok(response(200, &[], body)));
            rig.get().unwrap_err().to_string()
        };
        let e = refused(
            r#"{"access_token":"id","token_type":"N_A","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
        );
        assert!(e.contains("token_type `N_A`"), "{e}");
        let e = refused(
            r#"{"access_token":"id","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
        );
        assert!(e.contains("is an ID token"), "{e}");
        rig.platform.respond(Ok(response(
            200,
            &[],
            r#"{"access_token":"sts","token_type":"Bearer","expires_in":3599,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#,
        )));
        assert_eq!(rig.get().unwrap().token.expose(), "sts");
        let sent = rig.platform.sent.borrow();
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&sent[0].body).into_owned().collect();
        assert!(form.contains(&("subject_token".into(), jwt.clone())));
    }

    /// A `grant = jwt_bearer` fetch: its line names the grant and `none`, and every
    /// attempt signs a new assertion.
    #[test]
    fn a_jwt_bearer_fetch_names_its_grant_and_signs_each_attempt() {
        let rig = Rig::new(&[
            ("grant", "jwt_bearer"),
            ("auth_method", "none"),
            ("client_private_key", crate::testing::p256_pem()),
        ]);
        rig.platform.respond(Ok(response(503, &[], "busy")));
        rig.platform.respond_token("google-style", 3599);
        assert_eq!(rig.get().unwrap().token.expose(), "google-style");
        let fetches = rig.platform.events("token.fetch");
        let named: Vec<_> = fetches
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str(),
                    e["grant"].as_str(),
                    e["auth_method"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                (Some("retry"), Some("jwt_bearer"), Some("none")),
                (Some("ok"), Some("jwt_bearer"), Some("none"))
            ]
        );
        let assertions: Vec<String> = rig
            .platform
            .sent
            .borrow()
            .iter()
            .map(|r| {
                form_urlencoded::parse(&r.body)
                    .find(|(k, _)| k == "assertion")
                    .map(|(_, v)| v.into_owned())
                    .unwrap()
            })
            .collect();
        assert_eq!(assertions.len(), 2);
        assert_ne!(assertions[0], assertions[1]);
    }

    #[test]
    fn every_attempt_signs_a_new_assertion() {
        // A retried request must not replay the assertion the server may have seen.
        let rig = Rig::new(&[("auth_method", "client_secret_jwt")]);
        rig.platform.respond(Ok(response(503, &[], "busy")));
        rig.platform.respond_token("second-time", 100);
        rig.get().unwrap();
        let assertions: Vec<String> = rig
            .platform
            .sent
            .borrow()
            .iter()
            .map(|r| {
                form_urlencoded::parse(&r.body)
                    .find(|(k, _)| k == "client_assertion")
                    .unwrap()
                    .1
                    .into_owned()
            })
            .collect();
        assert_eq!(assertions.len(), 2);
        assert_ne!(assertions[0], assertions[1]);
        let jti = |a: &str| {
            use base64::Engine as _;
            let payload = a.split('.').nth(1).unwrap();
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()["jti"].clone()
        };
        assert_ne!(jti(&assertions[0]), jti(&assertions[1]));
    }

    #[test]
    fn retry_after_is_honoured_in_seconds_and_as_a_date() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Ok(response(429, &[("retry-after", "2")], "slow down")));
        rig.platform.respond_token("t", 100);
        rig.get().unwrap();
        assert_eq!(rig.platform.slept_ms.get(), 2000);

        let rig = Rig::new(&[("kv_store", "")]);
        // T0 is 2027-01-15T08:00:00Z; ask for three seconds later.
        let date = "Fri, 15 Jan 2027 08:00:03 GMT";
        rig.platform
            .respond(Ok(response(503, &[("retry-after", date)], "")));
        rig.platform.respond_token("t", 100);
        rig.get().unwrap();
        assert_eq!(rig.platform.slept_ms.get(), 3000);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_the_retries_at_once() {
        let rig = Rig::new(&[]);
        rig.platform
            .respond(Ok(response(429, &[("retry-after", "120")], "")));
        assert!(matches!(rig.get(), Err(Error::Server { status: 429, .. })));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        assert_eq!(rig.platform.slept_ms.get(), 0);
    }

    #[test]
    fn retries_stop_at_max_retries_and_at_the_deadline() {
        let rig = Rig::new(&[("max_retries", "2")]);
        for _ in 0..5 {
            rig.platform.respond(Err(Error::Timeout));
        }
        assert_eq!(rig.get(), Err(Error::Timeout));
        assert_eq!(rig.platform.sent.borrow().len(), 3);

        let rig = Rig::new(&[("max_retries", "10"), ("token_deadline_ms", "1000")]);
        rig.platform.send_ms.set(400);
        for _ in 0..10 {
            rig.platform
                .respond(Err(Error::Transport("refused".into())));
        }
        let started = rig.platform.now_unix_ms();
        assert!(rig.get().is_err());
        let spent = rig.platform.now_unix_ms() - started;
        assert!(spent <= 1000, "spent {spent} ms");
        assert!(rig.platform.sent.borrow().len() <= 3);
    }

    #[test]
    fn oauth_client_errors_are_not_retried() {
        let rig = Rig::new(&[]);
        rig.platform.respond(Ok(response(
            400,
            &[("content-type", "application/json")],
            r#"{"error":"invalid_scope"}"#,
        )));
        assert!(matches!(rig.get(), Err(Error::OAuth(ref o)) if o.error == "invalid_scope"));
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        // Not a credential problem: no cooldown, the next call asks again.
        rig.platform.respond_token("t", 100);
        assert!(rig.get().is_ok());
    }

    #[test]
    fn a_federated_assertion_is_sent_as_given_until_it_expires() {
        use base64::Engine as _;
        // Rig time is T0 (1_800_000_000 s); the assertion expires 100 s later.
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"iss":"https://k8s.example","sub":"svc","exp":1800000100}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        let rig = Rig::new(&[
            ("auth_method", "client_assertion"),
            ("client_secret", ""),
            ("client_assertion", &jwt),
            ("cache_secret", "hQ3vZ9kWc1rYb7Tn2LxP8sJd5GmEa0Fu"),
        ]);
        rig.platform.respond_token("T1", 60);
        rig.get().unwrap();
        let body = rig.platform.sent.borrow()[0].body.clone();
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&body).into_owned().collect();
        assert_eq!(form["client_assertion"], jwt);
        assert_eq!(
            form["client_assertion_type"],
            crate::oauth::client_auth::JWT_BEARER
        );
        assert_eq!(form["client_id"], "svc");
        // 200 s later the cached token is gone and the assertion has expired: a config
        // error naming it, and nothing sent.
        rig.platform.advance(200_000);
        let e = rig.get().unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.starts_with("client_assertion: expired at 1800000100")),
            "{e:?}"
        );
        assert_eq!(rig.platform.sent.borrow().len(), 1);
        let errors: Vec<_> = rig
            .platform
            .events("token.fetch")
            .into_iter()
            .filter(|e| e["outcome"] == "error")
            .collect();
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].to_string().contains(&payload));
    }
}
