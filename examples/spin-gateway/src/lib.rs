//! A request to `/orders/...` on this Spin app is sent on to `{api_url}/orders/...` on the
//! protected API (same method, path with query, body, `content-type` and `accept`), with
//! a token from the token-provider component attached. The gateway never
//! sees the client secret or the token: it imports `authorized-client` and Spin plugs
//! in `token_provider.wasm` as a component dependency.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

wit_bindgen::generate!({
    path: "../../wit",
    world: "oauth2:token-provider/client",
});

use oauth2::token_provider::authorized_client::{self, Request as ApiRequest};
use oauth2::token_provider::types::Error;

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let api_url = spin_sdk::variables::get("api_url")?;
    let path = req.path_and_query().unwrap_or(req.path());
    // Only what describes the body and the answer wanted; never the caller's
    // `authorization` (the provider sets it, and refuses a request that has one).
    let mut headers = Vec::new();
    for name in ["content-type", "accept"] {
        if let Some(value) = req.header(name) {
            headers.push((name.to_string(), value.as_bytes().to_vec()));
        }
    }
    if req.header("accept").is_none() {
        headers.push(("accept".into(), b"application/json".to_vec()));
    }
    let forwarded = ApiRequest {
        method: req.method().to_string(),
        url: format!("{}{path}", api_url.trim_end_matches('/')),
        headers,
        body: (!req.body().is_empty()).then(|| req.body().to_vec()),
        token: None,
    };
    Ok(match authorized_client::send(&forwarded) {
        Ok(resp) => {
            let content_type = resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "application/octet-stream".into());
            Response::builder()
                .status(resp.status)
                .header("content-type", content_type)
                .body(resp.body)
                .build()
        }
        Err(e) => Response::builder()
            .status(502)
            .header("content-type", "text/plain")
            .body(describe(&e))
            .build(),
    })
}

/// The provider's errors carry no secret or token, so they can be shown.
fn describe(e: &Error) -> String {
    match e {
        Error::Config(m) => format!("token provider configuration: {m}"),
        Error::Oauth(o) => format!("token endpoint refused: {} (HTTP {})", o.error, o.status),
        Error::Server(s) => format!("token endpoint failed: HTTP {}: {}", s.status, s.message),
        Error::Transport(m) => format!("transport: {m}"),
        Error::InvalidResponse(m) => format!("invalid response: {m}"),
        Error::Timeout => "timeout".into(),
        Error::Refused(m) => format!("refused: {m}"),
    }
}
