//! The provider's exports: `provider` and `authorized-client`.

use super::convert::{core_token_request, wit_error, wit_token};
use super::exports::oauth2::token_provider::{authorized_client, provider};
use super::{Component, wit, with_provider};
use crate::authorized::{self, ApiRequest};

impl provider::Guest for Component {
    fn get_token(request: wit::TokenRequest) -> Result<wit::AccessToken, wit::Error> {
        let request = core_token_request(request);
        with_provider(|p| p.get_token(&request))
            .map(wit_token)
            .map_err(wit_error)
    }

    fn invalidate(request: wit::TokenRequest) {
        let request = core_token_request(request);
        // Without valid settings there is nothing cached to drop.
        let _ = with_provider(|p| {
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
        with_provider(|p| authorized::send(p, &request))
            .map(|r| authorized_client::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(wit_error)
    }
}
