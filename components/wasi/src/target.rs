//! A core request's method, scheme, authority and path, and its timeouts, set on the
//! host's request type, for both the WASI 0.2 and the 0.3 bindings (the same
//! setters on two generated types).

/// Set `request`'s (an `HttpRequest`) method, scheme, authority and path on `outgoing`
/// (a host request with `set_method`, `set_scheme`, `set_authority` and
/// `set_path_with_query`) whose binding's `Method` and `Scheme` types are given; a
/// refusal is a core `Refused` error naming the part.
#[doc(hidden)]
#[macro_export]
macro_rules! set_request_target {
    ($outgoing:expr, $request:expr, $method:path, $scheme:path) => {{
        type M = $method;
        type S = $scheme;
        let (outgoing, request) = (&$outgoing, &$request);
        let method = match request.method.as_str() {
            "GET" => M::Get,
            "POST" => M::Post,
            "PUT" => M::Put,
            "DELETE" => M::Delete,
            "PATCH" => M::Patch,
            "HEAD" => M::Head,
            "OPTIONS" => M::Options,
            other => M::Other(other.to_string()),
        };
        let scheme = match request.url.origin.scheme {
            $crate::CoreScheme::Https => S::Https,
            $crate::CoreScheme::Http => S::Http,
        };
        let invalid =
            |what: &str| $crate::CoreError::Refused(format!("the host refused the request {what}"));
        outgoing
            .set_method(&method)
            .map_err(|()| invalid("method"))
            .and_then(|()| {
                outgoing
                    .set_scheme(Some(&scheme))
                    .map_err(|()| invalid("scheme"))
            })
            .and_then(|()| {
                outgoing
                    .set_authority(Some(&request.url.authority))
                    .map_err(|()| invalid("authority"))
            })
            .and_then(|()| {
                outgoing
                    .set_path_with_query(Some(&request.url.path_and_query))
                    .map_err(|()| invalid("path"))
            })
    }};
}

/// `options` (a new host `RequestOptions`) with the same `timeout_ms` for connect, first
/// byte and between bytes; a host that does not support one says so with `Err`, and
/// the others still apply.
#[doc(hidden)]
#[macro_export]
macro_rules! with_timeouts {
    ($options:expr, $timeout_ms:expr) => {{
        let options = $options;
        let timeout_ns = ($timeout_ms as u64).saturating_mul(1_000_000);
        let _ = options.set_connect_timeout(Some(timeout_ns));
        let _ = options.set_first_byte_timeout(Some(timeout_ns));
        let _ = options.set_between_bytes_timeout(Some(timeout_ns));
        options
    }};
}
