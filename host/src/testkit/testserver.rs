//! An in-process OAuth2 token endpoint and protected API on loopback, for the demo and
//! the tests. It records every request it sees, issues short opaque tokens, and can be
//! told to answer anything at all (canned responses) or to revoke what it issued.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form body as ordered pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A canned answer for the token endpoint.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

struct State {
    client_id: String,
    client_secret: String,
    /// More secrets accepted for `client_id` (a rotation in progress).
    more_secrets: Vec<String>,
    /// Accept a `client_assertion` for the client id without checking it (benchmarks
    /// of the signing side only).
    accept_assertions: bool,
    expires_in: Option<serde_json::Value>,
    requests: Vec<Recorded>,
    issued: HashMap<String, Instant>,
    lifetimes: HashMap<String, Duration>,
    canned: Option<Canned>,
    counter: u64,
    token_delay: Duration,
    /// Token requests wait until this is `true` (`hold_tokens`/`release_tokens`).
    token_gate: tokio::sync::watch::Receiver<bool>,
    /// Token requests that reached the server, held or not.
    token_arrivals: usize,
    record_api: bool,
    /// Every token ever issued (for leak checks; `revoke_all` does not clear it).
    all_issued: Vec<String>,
    /// DPoP (`set_dpop`): the checker of every proof, the thumbprint each bound token
    /// is bound to, the nonces the token endpoint and the API want, and what was
    /// refused and why.
    dpop: Dpop,
}

/// The server's DPoP state.
#[derive(Default)]
struct Dpop {
    /// Proofs are checked (signature and all); off: a token request's proof only has
    /// its key read (benchmarks of the client side).
    check: bool,
    checker: super::dpop::Checker,
    bound: HashMap<String, String>,
    token_nonce: Option<String>,
    api_nonce: Option<String>,
    /// Every `use_dpop_nonce` answer of the token endpoint comes with a new nonce (a
    /// server that never takes the one it gave).
    rotate: bool,
    verified: usize,
    refusals: Vec<String>,
}

/// The server. Dropping it stops accepting connections.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    token_gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    /// Start on `127.0.0.1:0`, accepting `client_id`/`client_secret` by Basic or post.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (token_gate, gate) = tokio::sync::watch::channel(true);
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            more_secrets: Vec::new(),
            accept_assertions: false,
            expires_in: Some(3600.into()),
            requests: Vec::new(),
            issued: HashMap::new(),
            lifetimes: HashMap::new(),
            canned: None,
            counter: 0,
            token_delay: Duration::ZERO,
            token_gate: gate,
            token_arrivals: 0,
            record_api: true,
            all_issued: Vec::new(),
            dpop: Dpop {
                check: true,
                ..Dpop::default()
            },
        }));
        let task = super::serve_http1(listener, state.clone(), handle);
        Ok(MockServer {
            addr,
            state,
            token_gate,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for `allowed_origins`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `expires_in` to send (`None`: omit it). Any JSON value, to test leniency.
    pub fn set_expires_in(&self, value: Option<serde_json::Value>) {
        self.state.lock().unwrap().expires_in = value;
    }

    /// Answer the token endpoint with this instead of a token (`None`: normal again).
    pub fn set_canned(&self, canned: Option<Canned>) {
        self.state.lock().unwrap().canned = canned;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to the token endpoint (`/token`) so far.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/token")
            .collect()
    }

    /// Requests to the protected API (`/api/...`) so far.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/api"))
            .collect()
    }

    /// Answer token requests only after `delay` (a slow authorization server).
    pub fn set_token_delay(&self, delay: Duration) {
        self.state.lock().unwrap().token_delay = delay;
    }

    /// Hold every token request from now on until [`Self::release_tokens`] (a token
    /// endpoint that answers exactly when the test says).
    pub fn hold_tokens(&self) {
        self.token_gate.send_replace(false);
    }

    /// Answer the held token requests, and those to come.
    pub fn release_tokens(&self) {
        self.token_gate.send_replace(true);
    }

    /// Token requests that reached the server so far, held ones included.
    pub fn token_arrivals(&self) -> usize {
        self.state.lock().unwrap().token_arrivals
    }

    /// Keep recording API requests (default) or only count them (long load runs).
    /// Accept any JWT-bearer `client_assertion` sent with the right `client_id`,
    /// **without verifying it**: for timing the client's signing, never for a test of
    /// client authentication (oidc-provider verifies them in those).
    pub fn set_accept_assertions(&self, accept: bool) {
        self.state.lock().unwrap().accept_assertions = accept;
    }

    pub fn set_record_api(&self, record: bool) {
        self.state.lock().unwrap().record_api = record;
    }

    /// Token endpoint requests so far (successful or not).
    pub fn token_request_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path == "/token")
            .count()
    }

    /// Every access token this server has issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().all_issued.clone()
    }

    /// Accept `secret` too (both old and new secret are valid during a rotation).
    pub fn accept_secret(&self, secret: &str) {
        self.state.lock().unwrap().more_secrets.push(secret.into());
    }

    /// Forget every token issued so far: the API answers 401 to them.
    /// The nonces the token endpoint and the API ask DPoP proofs for (`None`: none).
    pub fn set_dpop_nonces(&self, token: Option<&str>, api: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        s.dpop.token_nonce = token.map(str::to_string);
        s.dpop.api_nonce = api.map(str::to_string);
    }

    /// Every `use_dpop_nonce` answer of the token endpoint brings a new nonce.
    pub fn set_dpop_nonce_rotates(&self, rotates: bool) {
        self.state.lock().unwrap().dpop.rotate = rotates;
    }

    /// Whether proofs are checked (by default they are); off, a token request's proof
    /// only has its key read and an API request's is not looked at: benchmarks of the
    /// client's side.
    pub fn set_check_dpop(&self, check: bool) {
        self.state.lock().unwrap().dpop.check = check;
    }

    /// (DPoP proofs that were checked and good, why others were refused).
    pub fn dpop_stats(&self) -> (usize, Vec<String>) {
        let s = self.state.lock().unwrap();
        (s.dpop.verified, s.dpop.refusals.clone())
    }

    /// The thumbprint `token` is bound to, if it is a DPoP token.
    pub fn bound_to(&self, token: &str) -> Option<String> {
        self.state.lock().unwrap().dpop.bound.get(token).cloned()
    }

    pub fn revoke_all(&self) {
        let mut s = self.state.lock().unwrap();
        s.issued.clear();
        s.lifetimes.clear();
    }
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn json(status: u16, value: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    let recorded = Recorded {
        method,
        path,
        query,
        headers,
        body,
    };
    let is_token = recorded.path == "/token";
    let (delay, mut gate) = {
        let mut s = state.lock().unwrap();
        s.token_arrivals += usize::from(is_token);
        (s.token_delay, s.token_gate.clone())
    };
    if is_token && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if is_token {
        // The server is dropped with its gate: a held request then just ends.
        let _ = gate.wait_for(|open| *open).await;
    }
    let mut s = state.lock().unwrap();
    if is_token || s.record_api {
        s.requests.push(recorded.clone());
    }
    Ok(if is_token {
        token_endpoint(&mut s, &recorded)
    } else if recorded.path.starts_with("/api") {
        api(&mut s, &recorded)
    } else if recorded.path == "/.well-known/openid-configuration" {
        metadata(&recorded)
    } else {
        respond(404, "text/plain", "not found")
    })
}

fn token_endpoint(s: &mut State, r: &Recorded) -> Response<Full<Bytes>> {
    if let Some(c) = &s.canned {
        return respond(c.status, &c.content_type, c.body.clone());
    }
    if r.method != "POST" {
        return json(405, serde_json::json!({"error": "invalid_request"}));
    }
    let form: HashMap<String, String> = r.form().into_iter().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return json(400, serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let accepted = authenticated(s, r, &form);
    if !accepted {
        return json(
            401,
            serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"}),
        );
    }
    let bound = match r.header("dpop") {
        None => None,
        Some(proof) => match token_request_proof(s, r, proof) {
            Ok(jkt) => Some(jkt),
            Err(refused) => return *refused,
        },
    };
    s.counter += 1;
    let token = format!(
        "mock-at-{}-{:x}",
        s.counter,
        Instant::now().elapsed().subsec_nanos() ^ 0x5eed
    );
    let token_type = if bound.is_some() { "DPoP" } else { "Bearer" };
    let mut body = serde_json::json!({"access_token": token, "token_type": token_type});
    if let Some(jkt) = bound {
        s.dpop.bound.insert(token.clone(), jkt);
    }
    if let Some(e) = &s.expires_in {
        body["expires_in"] = e.clone();
        if let Some(secs) = e
            .as_u64()
            .or_else(|| e.as_str().and_then(|t| t.parse().ok()))
        {
            s.lifetimes.insert(token.clone(), Duration::from_secs(secs));
        }
    }
    if let Some(scope) = form.get("scope") {
        body["scope"] = scope.clone().into();
    }
    s.all_issued.push(token.clone());
    s.issued.insert(token, Instant::now());
    json(200, body)
}

/// Whether the token request authenticates the client: Basic or post credentials, or
/// (`accept_assertions`) any well-formed client assertion for its id.
fn authenticated(s: &State, r: &Recorded, form: &HashMap<String, String>) -> bool {
    let credentials = match r.header("authorization") {
        Some(h) => decode_basic(h),
        None => form
            .get("client_id")
            .cloned()
            .zip(form.get("client_secret").cloned()),
    };
    let assertion = s.accept_assertions
        && form.get("client_id") == Some(&s.client_id)
        && form.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && form
            .get("client_assertion")
            .is_some_and(|a| a.split('.').count() == 3);
    assertion
        || credentials.is_some_and(|(id, secret)| {
            id == s.client_id && (secret == s.client_secret || s.more_secrets.contains(&secret))
        })
}

/// The thumbprint of a token request's good proof, or the answer that refuses it.
fn token_request_proof(
    s: &mut State,
    r: &Recorded,
    proof: &str,
) -> Result<String, Box<Response<Full<Bytes>>>> {
    use super::dpop::{Expect, Refusal, thumbprint};
    if !s.dpop.check {
        let header = proof.split('.').next().unwrap_or_default();
        return decode_b64_json(header)
            .and_then(|h| thumbprint(&h["jwk"]))
            .ok_or_else(|| {
                Box::new(json(
                    400,
                    serde_json::json!({"error": "invalid_dpop_proof"}),
                ))
            });
    }
    let htu = format!("http://{}{}", r.header("host").unwrap_or_default(), r.path);
    let expect = Expect {
        method: "POST",
        htu: &htu,
        access_token: None,
        jkt: None,
        nonce: s.dpop.token_nonce.as_deref(),
    };
    let outcome = s.dpop.checker.check(proof, &expect, unix_now());
    match outcome {
        Ok(jkt) => {
            s.dpop.verified += 1;
            Ok(jkt)
        }
        Err(Refusal::UseNonce) => {
            s.dpop.refusals.push("token: use_dpop_nonce".into());
            let mut answer = json(400, serde_json::json!({"error": "use_dpop_nonce"}));
            let nonce = s.dpop.token_nonce.clone().unwrap_or_default();
            if s.dpop.rotate {
                // The nonce given is never the one wanted next.
                s.dpop.token_nonce = Some(format!("rotated-{}", s.dpop.refusals.len()));
            }
            // As bytes: a hostile test's nonce may hold what no nonce may.
            if let Ok(value) = hyper::header::HeaderValue::from_bytes(nonce.as_bytes()) {
                answer.headers_mut().insert("dpop-nonce", value);
            }
            Err(Box::new(answer))
        }
        Err(Refusal::Invalid(why)) => {
            s.dpop.refusals.push(format!("token: {why}"));
            let refused = json(400, serde_json::json!({"error": "invalid_dpop_proof"}));
            Err(Box::new(refused))
        }
    }
}

/// Whether an API request with DPoP-bound `token` proves possession of its key; the
/// 401 that says why not.
fn api_proof(s: &mut State, r: &Recorded, token: &str, jkt: &str) -> Option<Response<Full<Bytes>>> {
    use super::dpop::{Expect, Refusal};
    if !s.dpop.check {
        return None;
    }
    let refuse = |s: &mut State, error: &str, why: String| {
        s.dpop.refusals.push(format!("api: {why}"));
        let mut answer = json(401, serde_json::json!({"error": error}));
        if let Ok(v) = format!("DPoP error=\"{error}\"").parse() {
            answer.headers_mut().insert("www-authenticate", v);
        }
        if error == "use_dpop_nonce"
            && let Some(Ok(v)) = s.dpop.api_nonce.as_ref().map(|n| n.parse())
        {
            answer.headers_mut().insert("dpop-nonce", v);
        }
        Some(answer)
    };
    let Some(proof) = r.header("dpop").map(str::to_string) else {
        return refuse(s, "invalid_token", "no proof".into());
    };
    let htu = format!("http://{}{}", r.header("host").unwrap_or_default(), r.path);
    let api_nonce = s.dpop.api_nonce.clone();
    let expect = Expect {
        method: &r.method,
        htu: &htu,
        access_token: Some(token),
        jkt: Some(jkt),
        nonce: api_nonce.as_deref(),
    };
    match s.dpop.checker.check(&proof, &expect, unix_now()) {
        Ok(_) => {
            s.dpop.verified += 1;
            None
        }
        Err(Refusal::UseNonce) => refuse(s, "use_dpop_nonce", "use_dpop_nonce".into()),
        Err(Refusal::Invalid(why)) => refuse(s, "invalid_token", why),
    }
}

fn decode_b64_json(part: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Basic credentials, form-decoded per RFC 6749 §2.3.1.
/// OpenID Connect discovery metadata naming this server (by the request's `Host`) as
/// the issuer, its `/token` and the two secret methods. There is no RFC 8414 document:
/// a client finds this one after that URL's 404.
fn metadata(r: &Recorded) -> Response<Full<Bytes>> {
    let issuer = format!("http://{}", r.header("host").unwrap_or("127.0.0.1"));
    json(
        200,
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }),
    )
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        form_urlencoded::parse(format!("v={}", s.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn api(s: &mut State, r: &Recorded) -> Response<Full<Bytes>> {
    // `/api/redirect?to=URL`: a 302 to URL, whatever the token.
    if r.path == "/api/redirect" {
        let to = form_urlencoded::parse(r.query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "to")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut response = respond(302, "text/plain", "moved");
        if let Ok(location) = to.parse() {
            response.headers_mut().insert("location", location);
        }
        return response;
    }
    let authorization = r.header("authorization").unwrap_or_default();
    let (dpop, token) = match authorization.split_once(' ') {
        Some(("DPoP", t)) => (true, Some(t)),
        Some(("Bearer", t)) => (false, Some(t)),
        _ => (false, None),
    };
    let Some(token) = token else {
        return json(
            401,
            serde_json::json!({"error": "invalid_token", "error_description": "no bearer token"}),
        );
    };
    let valid = match (s.issued.get(token), s.lifetimes.get(token)) {
        (Some(_), None) => true,
        (Some(at), Some(life)) => at.elapsed() < *life,
        _ => false,
    };
    if !valid {
        return json(401, serde_json::json!({"error": "invalid_token"}));
    }
    match s.dpop.bound.get(token).cloned() {
        // A DPoP token as Bearer, or a Bearer token as DPoP: refused.
        Some(_) if !dpop => return json(401, serde_json::json!({"error": "invalid_token"})),
        None if dpop => return json(401, serde_json::json!({"error": "invalid_token"})),
        Some(jkt) => {
            if let Some(refused) = api_proof(s, r, token, &jkt) {
                return refused;
            }
        }
        None => {}
    }
    json(
        200,
        serde_json::json!({"ok": true, "path": r.path, "method": r.method}),
    )
}
