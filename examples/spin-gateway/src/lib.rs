//! `GET /orders/...` on this Spin app becomes `GET {api_url}/orders/...` on the protected
//! API, with a token from the token-provider component attached. The gateway never
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
    let forwarded = ApiRequest {
        method: "GET".into(),
        url: format!("{}{}", api_url.trim_end_matches('/'), req.path()),
        headers: vec![("accept".into(), b"application/json".to_vec())],
        body: None,
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
