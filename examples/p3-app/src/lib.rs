//! A WASIp3 HTTP service written only against `wasi:http@0.3.0`: every request it
//! handles is sent on, method, path with query, headers and body (streamed, never
//! buffered), to the origin named in its `x-forward-to` header, through the standard
//! `wasi:http/client`; the answer goes back as it came. It knows nothing of OAuth: the
//! tests compose it with the token interceptor to show that the interceptor adds the
//! token to an app's requests without changing the app. Each `x-forward-set: name:
//! value` header is set on the request it sends (the tests use it to see what the host
//! lets an app set).

wit_bindgen::generate!({
    path: "wit",
    world: "app",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::client;
use wasi::http::types::{ErrorCode, Request, Response, Scheme};

struct App;

impl Guest for App {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let headers = request.get_headers();
        let target = headers
            .get("x-forward-to")
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or(ErrorCode::HttpRequestUriInvalid)?;
        let (scheme, authority) = match target.split_once("://") {
            Some(("http", a)) => (Scheme::Http, a.trim_end_matches('/').to_string()),
            Some(("https", a)) => (Scheme::Https, a.trim_end_matches('/').to_string()),
            // Any other scheme as written (`HTTPS` is `other` to wasi:http).
            Some((other, a)) => (Scheme::Other(other.into()), a.trim_end_matches('/').into()),
            None => return Err(ErrorCode::HttpRequestUriInvalid),
        };
        let forwarded = headers.clone();
        forwarded
            .delete("x-forward-to")
            .map_err(|_| ErrorCode::InternalError(Some("headers".into())))?;
        let _ = forwarded.delete("host");
        let _ = forwarded.delete("x-forward-set");
        for set in headers.get("x-forward-set") {
            let set = String::from_utf8_lossy(&set).into_owned();
            let (name, value) = set.split_once(':').unwrap_or((&set, ""));
            forwarded
                .append(name.trim(), value.trim().as_bytes())
                .map_err(|e| ErrorCode::InternalError(Some(format!("{name}: {e:?}"))))?;
        }
        let method = request.get_method();
        let path = request.get_path_with_query();
        let (_, body_result) = wit_future::new(|| Ok(()));
        let (body, trailers) = Request::consume_body(request, body_result);
        let (outgoing, _sent) = Request::new(forwarded, Some(body), trailers, None);
        let invalid = |_| ErrorCode::HttpRequestUriInvalid;
        outgoing.set_method(&method).map_err(invalid)?;
        outgoing.set_scheme(Some(&scheme)).map_err(invalid)?;
        outgoing.set_authority(Some(&authority)).map_err(invalid)?;
        outgoing
            .set_path_with_query(path.as_deref())
            .map_err(invalid)?;
        client::send(outgoing).await
    }
}

export!(App);
