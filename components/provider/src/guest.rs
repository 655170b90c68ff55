//! The provider's exports, `provider`, `authorized-client` and `dpop`, over the core.

use super::convert::{core_token_request, wit_error, wit_token};
use super::exports::oauth2::token_provider::{authorized_client, dpop, provider};
use super::{Component, wit};
use token_provider_core::{
    ApiRequest, Error as CoreError, Provider, Reading, keep_nonce, proof_for, send,
};
use token_provider_wasi::{WasiPlatform, with_provider as with_instance};

/// The provider reads no interceptor key (their parser stays out of its `.wasm`).
const READING: Reading = Reading::WithoutIntercept;

/// `f` with this instance's provider (over WASI 0.2, whose calls block: the future is
/// ready at once).
fn with_provider<R, F: Future<Output = Result<R, CoreError>>>(
    f: impl FnOnce(Provider<'static, WasiPlatform>) -> F,
) -> Result<R, CoreError> {
    with_instance(READING, |_, p| f(p))
}

impl provider::Guest for Component {
    fn get_token(request: wit::TokenRequest) -> Result<wit::AccessToken, wit::Error> {
        let request = core_token_request(request);
        with_provider(|p| async move { p.get_token(&request).await })
            .map(wit_token)
            .map_err(wit_error)
    }

    fn invalidate(request: wit::TokenRequest) {
        let request = core_token_request(request);
        // Without valid settings there is nothing cached to drop.
        let _ = with_provider(|p| async move {
            p.invalidate(&request);
            Ok(())
        });
    }
}

impl authorized_client::Guest for Component {
    fn send(
        request: authorized_client::Request,
    ) -> Result<authorized_client::Response, wit::Error> {
        let request = ApiRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            token: request.token.map(core_token_request),
        };
        with_instance(
            READING,
            |s, p| async move { send(&p, &s.send, &request).await },
        )
        .map(|r| authorized_client::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
        .map_err(wit_error)
    }
}

impl dpop::Guest for Component {
    fn proof(
        request: wit::TokenRequest,
        method: String,
        url: String,
    ) -> Result<dpop::Proven, wit::Error> {
        let request = core_token_request(request);
        with_provider(|p| async move { proof_for(&p, &request, &method, &url).await })
            .map(|(token, proof)| dpop::Proven {
                token: wit_token(token),
                proof,
            })
            .map_err(wit_error)
    }

    fn keep_nonce(url: String, nonce: String) -> Result<(), wit::Error> {
        with_provider(|p| async move { keep_nonce(&p, &url, &nonce) }).map_err(wit_error)
    }
}
