//! The baseline for the gateway in the benchmark's Spin emulation: the same Spin HTTP
//! component request (`/orders/...` sent on to `{api_url}/orders/...` with the same
//! headers), but with a static token from the variable `api_token` instead of a token
//! from the provider. What a service pays without a token client.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let api_url = spin_sdk::variables::get("api_url")?;
    let token = spin_sdk::variables::get("api_token")?;
    let path = req.path_and_query().unwrap_or(req.path());
    let mut forwarded = Request::builder();
    forwarded
        .method(Method::Get)
        .uri(format!("{}{path}", api_url.trim_end_matches('/')))
        .header("authorization", format!("Bearer {token}"));
    for name in ["content-type", "accept"] {
        if let Some(value) = req.header(name).and_then(|v| v.as_str()) {
            forwarded.header(name, value);
        }
    }
    if req.header("accept").is_none() {
        forwarded.header("accept", "application/json");
    }
    let resp: Response = spin_sdk::http::send(forwarded.build()).await?;
    let content_type = resp
        .header("content-type")
        .and_then(|v| v.as_str())
        .unwrap_or("application/octet-stream")
        .to_string();
    Ok(Response::builder()
        .status(*resp.status())
        .header("content-type", content_type)
        .body(resp.body().to_vec())
        .build())
}
