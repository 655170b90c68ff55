//! WIT types to core types and back.

use super::wit;
use token_provider_core::{
    Error as CoreError, IssuedToken, OAuthError, Source, TokenRequest as CoreTokenRequest,
};

pub(super) fn core_token_request(r: wit::TokenRequest) -> CoreTokenRequest {
    CoreTokenRequest {
        scopes: r.scopes,
        audience: r.audience,
        resources: r.resources,
        force_refresh: r.force_refresh,
    }
}

pub(super) fn wit_token(t: IssuedToken) -> wit::AccessToken {
    wit::AccessToken {
        token: t.token.expose().to_string(),
        token_type: t.token_type.as_str().into(),
        expires_at: t.expires_at,
        scopes: t.scopes,
        source: match t.source {
            Source::Fresh => wit::TokenSource::Fresh,
            Source::Memory => wit::TokenSource::Memory,
            Source::Store => wit::TokenSource::Store,
        },
    }
}

pub(super) fn wit_error(e: CoreError) -> wit::Error {
    match e {
        CoreError::Config(m) => wit::Error::Config(m),
        CoreError::OAuth(OAuthError {
            error,
            description,
            uri,
            status,
        }) => wit::Error::Oauth(wit::OauthError {
            error,
            error_description: description,
            error_uri: uri,
            status,
        }),
        CoreError::Server { status, message } => {
            wit::Error::Server(wit::ServerError { status, message })
        }
        CoreError::Transport(m) => wit::Error::Transport(m),
        CoreError::InvalidResponse(m) => wit::Error::InvalidResponse(m),
        CoreError::Timeout => wit::Error::Timeout,
        CoreError::Refused(m) => wit::Error::Refused(m),
    }
}
