//! A plain `wasi:http` GET, for comparing the provider's authorized client against the
//! request it wraps (see host/benches/provider.rs).

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "example:plain-http/plain-http",
    generate_all,
});

use exports::example::plain_http::fetch::Guest;
use wasi::http::outgoing_handler::handle;
use wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct Plain;
export!(Plain);

impl Guest for Plain {
    fn get(
        authority: String,
        path_with_query: String,
        authorization: String,
    ) -> Result<u16, String> {
        let headers = Fields::from_list(&[("authorization".into(), authorization.into_bytes())])
            .map_err(|e| format!("{e:?}"))?;
        let request = OutgoingRequest::new(headers);
        request.set_method(&Method::Get).map_err(|()| "method")?;
        request
            .set_scheme(Some(&Scheme::Http))
            .map_err(|()| "scheme")?;
        request
            .set_authority(Some(&authority))
            .map_err(|()| "authority")?;
        request
            .set_path_with_query(Some(&path_with_query))
            .map_err(|()| "path")?;
        let body = request.body().map_err(|()| "body")?;
        let future = handle(request, None).map_err(|e| format!("{e:?}"))?;
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => return Err(format!("{e:?}")),
            _ => return Err("no response".into()),
        };
        let status = response.status();
        let incoming = response.consume().map_err(|()| "consume")?;
        {
            let stream = incoming.stream().map_err(|()| "stream")?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(_) => {}
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(status)
    }
}
