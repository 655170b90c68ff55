//! The headers a token goes out with, for `send` and the interceptor alike:
//! `Authorization: Bearer <token>`, or for a DPoP-bound token `Authorization: DPoP
//! <token>` and a `DPoP` proof made for this one request (RFC 9449 §7.1: `htm`, `htu`,
//! `iat`, a fresh `jti`, `ath` of the token, and the nonce the API's origin sent
//! last). And the nonce an API's answer brings, kept per origin.

use crate::error::Error;
use crate::oauth::dpop::ProofClaims;
use crate::origin::{Origin, parse_url};
use crate::platform::Platform;
use crate::provider::{IssuedToken, Provider};
use crate::send::challenge::asks_for_dpop_nonce;

/// Whose nonces these are: the API at `origin` (the token endpoint's are its own, even
/// on the same origin).
fn api_server(origin: &Origin) -> String {
    format!("API {origin}")
}

/// The `authorization` value, and for a DPoP token the `dpop` proof, for a request of
/// `method` to `url` (its query and fragment are left out of `htu`) at `origin`.
pub fn token_headers<P: Platform>(
    provider: &Provider<'_, P>,
    token: &IssuedToken,
    method: &str,
    url: &str,
    origin: &Origin,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let authorization = format!("{} {}", token.token_type.as_str(), token.token.expose());
    let Some(key) = &token.dpop else {
        return (authorization.into_bytes(), None);
    };
    let nonce = provider.dpop_nonce(&api_server(origin));
    let mut jti = [0u8; 16];
    provider.platform.random_bytes(&mut jti);
    let claims = ProofClaims {
        method,
        url,
        now_secs: provider.platform.now_unix_ms() / 1000,
        jti,
        nonce: nonce.as_deref(),
        access_token: Some(token.token.expose()),
    };
    let random = |out: &mut [u8]| provider.platform.random_bytes(out);
    let proof = key.proof(&claims, &random);
    (authorization.into_bytes(), Some(proof.into_bytes()))
}

/// After an API at `origin` answered a request with `token` (`status`, its
/// `WWW-Authenticate` and `DPoP-Nonce` values): keep the nonce, if the token is a DPoP
/// one and the value may be sent back, for the next proofs to that origin; and say
/// whether the answer is a 401 `DPoP error="use_dpop_nonce"` that brought a new one,
/// so that the request is to be sent again at once with it. The one rule of `send` and
/// the interceptor.
pub fn nonce_asked<P: Platform, V: AsRef<[u8]>>(
    provider: &Provider<'_, P>,
    token: &IssuedToken,
    origin: &Origin,
    (status, www_authenticate, dpop_nonce): (u16, &[V], &[V]),
) -> bool {
    keep_api_nonce(provider, token, origin, dpop_nonce)
        && status == 401
        && asks_for_dpop_nonce(www_authenticate)
}

/// Keep the `DPoP-Nonce` an API at `origin` answered with (its header values), if the
/// token is a DPoP one and the value may be sent back: the next proof to that origin
/// carries it. Whether the nonce is new.
fn keep_api_nonce<P: Platform, V: AsRef<[u8]>>(
    provider: &Provider<'_, P>,
    token: &IssuedToken,
    origin: &Origin,
    values: &[V],
) -> bool {
    if token.dpop.is_none() {
        return false;
    }
    let Some(nonce) = values
        .first()
        .and_then(|v| std::str::from_utf8(v.as_ref()).ok())
    else {
        return false;
    };
    provider.keep_dpop_nonce(&api_server(origin), nonce)
}

/// A caller's request URL (the WIT `dpop` interface's): its fragment, never sent and
/// never part of `htu`, left out; a refusal when it is not an http(s) URL.
fn request_url(url: &str) -> Result<crate::origin::HttpUrl, Error> {
    let url = url.split('#').next().unwrap_or_default();
    parse_url(url).map_err(|e| Error::Refused(format!("URL: {e}")))
}

/// For a caller that sends a DPoP token itself (the WIT `dpop.proof`): the token for
/// `request` now, and a proof for one request of `method` to `url` with it. A refusal
/// when the token is not a DPoP one (`dpop = off`, or a Bearer answer accepted with
/// `dpop_require_binding = false`) or `method` or `url` is not one.
pub async fn proof_for<P: Platform>(
    provider: &Provider<'_, P>,
    request: &crate::oauth::request::TokenRequest,
    method: &str,
    url: &str,
) -> Result<(IssuedToken, String), Error> {
    if !crate::send::challenge::is_token(method) {
        return Err(Error::Refused(format!(
            "`{}` is not a valid HTTP method",
            crate::error::sanitize(method, 32)
        )));
    }
    let parsed = request_url(url)?;
    let token = provider.get_token(request).await?;
    if token.dpop.is_none() {
        return Err(Error::Refused(format!(
            "the token is a {} token: a DPoP proof goes only with a DPoP token (dpop = on)",
            token.token_type.as_str()
        )));
    }
    let (_, proof) = token_headers(provider, &token, method, &parsed.htu(), &parsed.origin);
    let proof = String::from_utf8(proof.unwrap_or_default()).unwrap_or_default();
    Ok((token, proof))
}

/// For a caller that sends a DPoP token itself (the WIT `dpop.keep-nonce`): keep the
/// `DPoP-Nonce` the server at `url` answered with, for the next proofs to its origin.
/// A value that may not be sent back is refused, and nothing is kept without DPoP.
pub fn keep_nonce<P: Platform>(
    provider: &Provider<'_, P>,
    url: &str,
    nonce: &str,
) -> Result<(), Error> {
    if provider.settings.client.dpop.is_none() {
        return Err(Error::Refused("dpop is off: no nonce is kept".into()));
    }
    let parsed = request_url(url)?;
    if !crate::oauth::dpop::valid_nonce(nonce) {
        return Err(Error::Refused(
            "not a DPoP nonce: empty, over 512 bytes, or with characters RFC 9449 does not allow"
                .into(),
        ));
    }
    provider.keep_dpop_nonce(&api_server(&parsed.origin), nonce);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::http_types::{HttpRequest, HttpResponse};
    use crate::platform::ready;
    use crate::send::authorized::{ApiRequest, send};
    use crate::testing::{Rig, T0, response};
    use base64ct::{Base64UrlUnpadded as B64, Encoding as _};

    const API: &str = "https://api.example.com";

    fn rig(extra: &[(&str, &str)]) -> Rig {
        let rig = Rig::new(&[&[("allowed_origins", API), ("dpop", "on")], extra].concat());
        rig.platform.respond(Ok(response(
            200,
            &[],
            r#"{"access_token":"tok-A","token_type":"DPoP","expires_in":3600}"#,
        )));
        rig
    }

    fn api_request(url: &str) -> ApiRequest {
        ApiRequest {
            method: "PATCH".into(),
            url: url.into(),
            headers: vec![],
            body: Some(b"{}".to_vec()),
            token: None,
        }
    }

    fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    fn claims(r: &HttpRequest) -> serde_json::Value {
        let proof = header(r, "dpop").expect("a proof");
        let payload = proof.split('.').nth(1).unwrap();
        serde_json::from_slice(&B64::decode_vec(payload).unwrap()).unwrap()
    }

    fn api_calls(rig: &Rig) -> Vec<HttpRequest> {
        let sent = rig.platform.sent.borrow();
        sent.iter()
            .filter(|r| r.method != "POST")
            .cloned()
            .collect()
    }

    fn send_one(rig: &Rig, url: &str) -> Result<HttpResponse, Error> {
        ready(send(&rig.provider(), &rig.send, &api_request(url)))
    }

    #[test]
    fn a_dpop_token_goes_with_a_proof_for_this_request() {
        let rig = rig(&[]);
        rig.platform.respond(Ok(response(200, &[], "one")));
        rig.platform.respond(Ok(response(200, &[], "two")));
        send_one(&rig, "https://api.example.com/v1/things?page=2").unwrap();
        send_one(&rig, "https://api.example.com/v1/things?page=3").unwrap();
        let calls = api_calls(&rig);
        let token_proof = {
            let sent = rig.platform.sent.borrow();
            claims(&sent[0])
        };
        assert_eq!(header(&calls[0], "authorization"), Some("DPoP tok-A"));
        let (a, b) = (claims(&calls[0]), claims(&calls[1]));
        assert_eq!(a["htm"], "PATCH");
        assert_eq!(a["htu"], "https://api.example.com/v1/things");
        assert_eq!(a["iat"], T0 / 1000);
        assert_eq!(a["ath"], crate::oauth::dpop::ath("tok-A"));
        assert!(a.get("nonce").is_none());
        // A proof per request, never the token request's.
        assert_ne!(a["jti"], b["jti"]);
        assert_ne!(a["jti"], token_proof["jti"]);
    }

    #[test]
    fn an_apis_nonce_is_kept_and_a_use_dpop_nonce_401_is_answered_once_at_once() {
        let rig = rig(&[]);
        let asks = |nonce: &str| {
            response(
                401,
                &[
                    (
                        "www-authenticate",
                        r#"DPoP error="use_dpop_nonce", algs="ES256""#,
                    ),
                    ("dpop-nonce", nonce),
                ],
                "",
            )
        };
        rig.platform.respond(Ok(asks("api-1")));
        rig.platform.respond(Ok(response(200, &[], "ok")));
        let resp = send_one(&rig, "https://api.example.com/v1").unwrap();
        assert_eq!(resp.status, 200);
        let calls = api_calls(&rig);
        assert_eq!(calls.len(), 2);
        assert!(claims(&calls[0]).get("nonce").is_none());
        assert_eq!(claims(&calls[1])["nonce"], "api-1");
        assert_eq!(rig.platform.slept_ms.get(), 0);
        // The token was not blamed: no invalidation, no second token request.
        assert!(rig.platform.events("token.invalidate").is_empty());
        assert_eq!(rig.platform.sent.borrow().len(), 3);
        // The next request sends the kept nonce at once.
        rig.platform.respond(Ok(response(200, &[], "ok")));
        send_one(&rig, "https://api.example.com/v2").unwrap();
        assert_eq!(claims(&api_calls(&rig)[2])["nonce"], "api-1");
        // An API that asks again and again: one answer, then its 401 to the caller.
        rig.platform.respond(Ok(asks("api-2")));
        rig.platform.respond(Ok(asks("api-3")));
        rig.platform.respond(Ok(response(200, &[], "never")));
        let resp = send_one(&rig, "https://api.example.com/v3").unwrap();
        assert_eq!(resp.status, 401);
        assert_eq!(api_calls(&rig).len(), 5);
        assert!(rig.platform.events("token.invalidate").is_empty());
    }

    #[test]
    fn a_nonce_that_may_not_be_sent_back_is_not_retried_nor_kept() {
        let rig = rig(&[]);
        rig.platform.respond(Ok(response(
            401,
            &[
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("dpop-nonce", "bad nonce"),
            ],
            "",
        )));
        let resp = send_one(&rig, "https://api.example.com/v1").unwrap();
        assert_eq!(resp.status, 401);
        assert_eq!(api_calls(&rig).len(), 1);
        assert!(rig.platform.events("dpop.nonce").is_empty());
    }

    #[test]
    fn a_dpop_invalid_token_401_renews_the_token() {
        let rig = rig(&[]);
        rig.platform.respond(Ok(response(
            401,
            &[("www-authenticate", r#"DPoP error="invalid_token""#)],
            "",
        )));
        rig.platform.respond(Ok(response(
            200,
            &[],
            r#"{"access_token":"tok-B","token_type":"DPoP","expires_in":3600}"#,
        )));
        rig.platform.respond(Ok(response(200, &[], "ok")));
        // The token came from the store, so the rule renews it.
        *rig.memory.borrow_mut() = Default::default();
        rig.get().unwrap();
        *rig.memory.borrow_mut() = Default::default();
        let resp = send_one(&rig, "https://api.example.com/v1").unwrap();
        assert_eq!(resp.status, 200);
        let calls = api_calls(&rig);
        assert_eq!(header(&calls[1], "authorization"), Some("DPoP tok-B"));
        assert_eq!(claims(&calls[1])["ath"], crate::oauth::dpop::ath("tok-B"));
    }

    #[test]
    fn a_bearer_token_goes_without_a_proof_and_callers_may_not_set_one() {
        let rig = Rig::new(&[("allowed_origins", API)]);
        rig.platform.respond_token("plain", 3600);
        rig.platform.respond(Ok(response(200, &[], "ok")));
        send_one(&rig, "https://api.example.com/v1").unwrap();
        let calls = api_calls(&rig);
        assert_eq!(header(&calls[0], "authorization"), Some("Bearer plain"));
        assert!(header(&calls[0], "dpop").is_none());
        let mut own = api_request("https://api.example.com/v1");
        own.headers = vec![("DPoP".into(), b"x.y.z".to_vec())];
        let refused = ready(send(&rig.provider(), &rig.send, &own)).unwrap_err();
        assert!(refused.to_string().contains("`dpop` header"), "{refused}");
    }

    #[test]
    fn a_caller_gets_the_token_with_a_proof_for_it_and_may_hand_back_a_nonce() {
        use crate::send::proof::{keep_nonce, proof_for};
        let rig = rig(&[]);
        let p = rig.provider();
        let get = |method: &str, url: &str| ready(proof_for(&p, &Default::default(), method, url));
        let (token, proof) = get("GET", "https://other.example/x?y=1#z").unwrap();
        assert_eq!(token.token.expose(), "tok-A");
        let payload = proof.split('.').nth(1).unwrap();
        let c: serde_json::Value =
            serde_json::from_slice(&B64::decode_vec(payload).unwrap()).unwrap();
        assert_eq!(
            (&c["htm"], &c["htu"]),
            (&"GET".into(), &"https://other.example/x".into())
        );
        assert_eq!(c["ath"], crate::oauth::dpop::ath("tok-A"));
        keep_nonce(&p, "https://other.example/anything", "srv-n").unwrap();
        let (_, proof) = get("GET", "https://other.example/x").unwrap();
        let payload = proof.split('.').nth(1).unwrap();
        let c: serde_json::Value =
            serde_json::from_slice(&B64::decode_vec(payload).unwrap()).unwrap();
        assert_eq!(c["nonce"], "srv-n");
        for (bad, why) in [("a b", "not a DPoP nonce"), ("", "not a DPoP nonce")] {
            let e = keep_nonce(&p, "https://other.example/", bad).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        assert!(get("GE T", "https://other.example/").is_err());
        assert!(
            get("GET", "not a url")
                .unwrap_err()
                .to_string()
                .contains("URL")
        );
        // Bearer: no proof.
        let bearer = Rig::new(&[]);
        bearer.platform.respond_token("plain", 3600);
        let e = ready(proof_for(
            &bearer.provider(),
            &Default::default(),
            "GET",
            API,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("a Bearer token"), "{e}");
        assert!(keep_nonce(&bearer.provider(), API, "n").is_err());
    }

    #[test]
    fn the_token_endpoint_and_an_api_on_its_origin_keep_their_own_nonces() {
        // (Found with oidc-provider, whose token endpoint and test API share an origin:
        // one nonce per origin made the next token request pay a use_dpop_nonce again.)
        let rig = Rig::new(&[
            ("allowed_origins", "https://auth.example.com"),
            ("dpop", "on"),
        ]);
        let token = |n: &str| {
            response(
                200,
                &[("dpop-nonce", n)],
                r#"{"access_token":"tok-A","token_type":"DPoP","expires_in":3600}"#,
            )
        };
        rig.platform.respond(Ok(token("as-1")));
        rig.platform
            .respond(Ok(response(200, &[("dpop-nonce", "rs-1")], "ok")));
        rig.platform.respond(Ok(response(200, &[], "ok")));
        send_one(&rig, "https://auth.example.com/api/1").unwrap();
        send_one(&rig, "https://auth.example.com/api/2").unwrap();
        rig.platform.respond(Ok(token("as-1")));
        ready(rig.provider().get_token(&crate::TokenRequest {
            force_refresh: true,
            ..Default::default()
        }))
        .unwrap();
        let sent = rig.platform.sent.borrow();
        let nonce = |i: usize| claims(&sent[i])["nonce"].clone();
        assert_eq!(nonce(2), "rs-1", "the API's");
        assert_eq!(nonce(3), "as-1", "the token endpoint's");
    }
    #[test]
    fn a_nonce_request_with_the_nonce_just_sent_is_not_sent_again() {
        // The interceptor's rule for `send` too: only a new nonce is worth a resend.
        let rig = rig(&[]);
        rig.platform
            .respond(Ok(response(200, &[("dpop-nonce", "api-1")], "ok")));
        send_one(&rig, "https://api.example.com/v1").unwrap();
        rig.platform.respond(Ok(response(
            401,
            &[
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("dpop-nonce", "api-1"),
            ],
            "",
        )));
        let resp = send_one(&rig, "https://api.example.com/v2").unwrap();
        assert_eq!(resp.status, 401);
        let calls = api_calls(&rig);
        assert_eq!(calls.len(), 2, "no resend with the same nonce");
        assert_eq!(claims(&calls[1])["nonce"], "api-1");
    }
}
