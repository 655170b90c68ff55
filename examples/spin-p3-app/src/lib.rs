//! An ordinary Spin 4.1 HTTP app, written with the WASIp3 Spin SDK (spin-sdk 7) and no
//! OAuth code: a request to `/api/...` is sent on to `{api_url}/...` (same method, path
//! with query, `content-type` and body) through the SDK's outgoing HTTP, which is the
//! standard `wasi:http/client@0.3.0`, and the API's status, `content-type` and body come
//! back. Tokens are attached by the token interceptor (`token_interceptor.wasm`),
//! composed in front of that `wasi:http/client@0.3.0` import; the app never sees one.
//!
//! Both bodies are streamed, never buffered: the SDK copies each one chunk by chunk from
//! the stream it arrives on to the stream it leaves on.

use spin_sdk::http::{BoxBody, Request, Response, Uri, box_body, send};
use spin_sdk::{http_service, variables};

#[http_service]
async fn handle(req: Request) -> anyhow::Result<Response<BoxBody>> {
    let api_url = variables::get("api_url").await?;
    let (parts, body) = req.into_parts();
    let url = format!("{}{}", api_url.trim_end_matches('/'), api_path(&parts.uri));
    let mut outgoing = Request::builder().method(parts.method).uri(url);
    if let Some(content_type) = parts.headers.get("content-type") {
        outgoing = outgoing.header("content-type", content_type);
    }
    Ok(match send(outgoing.body(body)?).await {
        Ok(resp) => {
            let mut answer = Response::builder().status(resp.status());
            if let Some(content_type) = resp.headers().get("content-type") {
                answer = answer.header("content-type", content_type);
            }
            answer.body(box_body(resp.into_body()))?
        }
        // The request never got an answer (unreachable API, or refused by the
        // interceptor): say why, as a gateway would.
        Err(e) => Response::builder()
            .status(502)
            .header("content-type", "text/plain")
            .body(box_body(format!("API request failed: {e}\n")))?,
    })
}

/// The path with query to ask the API for: the incoming one without its `/api` prefix
/// (`/api/orders?x=1` gives `/orders?x=1`, `/api` gives `/`; `/apiary` stays).
fn api_path(uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = match path.strip_prefix("/api") {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => rest,
        _ => path,
    };
    if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}
