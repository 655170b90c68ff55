//! The WIT types an embedder passes and gets back, and their bridges to the core
//! crate: its `Error` says what went wrong in words, its `Source` names where a token
//! came from, so the host and the component's audit log say the same thing.

pub use crate::bindings::exports::oauth2::token_provider::authorized_client::{
    Request as ApiRequest, Response as ApiResponse,
};
pub use crate::bindings::exports::oauth2::token_provider::dpop::Proven;
pub use crate::bindings::oauth2::token_provider::types::{
    AccessToken, Error as ProviderError, OauthError, ServerError, TokenRequest, TokenSource,
};
use token_provider_core::Source;

impl TokenRequest {
    /// The configured defaults.
    pub fn default_request() -> Self {
        TokenRequest {
            scopes: None,
            audience: None,
            resources: None,
            force_refresh: false,
        }
    }

    pub fn with_scopes<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> Self {
        TokenRequest {
            scopes: Some(scopes.into_iter().map(Into::into).collect()),
            ..Self::default_request()
        }
    }
}

impl ApiRequest {
    /// A plain GET of `url`: no headers, no body, the provider's own token.
    pub fn get(url: impl Into<String>) -> Self {
        ApiRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
            token: None,
        }
    }
}

/// The WIT `error` back as the core's error (the component maps it the other way).
impl From<ProviderError> for token_provider_core::Error {
    fn from(e: ProviderError) -> Self {
        use token_provider_core::OAuthError;
        match e {
            ProviderError::Config(m) => Self::Config(m),
            ProviderError::Oauth(e) => Self::OAuth(OAuthError {
                error: e.error,
                description: e.error_description,
                uri: e.error_uri,
                status: e.status,
            }),
            ProviderError::Server(e) => Self::Server {
                status: e.status,
                message: e.message,
            },
            ProviderError::Transport(m) => Self::Transport(m),
            ProviderError::InvalidResponse(m) => Self::InvalidResponse(m),
            ProviderError::Timeout => Self::Timeout,
            ProviderError::Refused(m) => Self::Refused(m),
        }
    }
}

impl From<TokenSource> for Source {
    fn from(source: TokenSource) -> Self {
        match source {
            TokenSource::Fresh => Source::Fresh,
            TokenSource::Memory => Source::Memory,
            TokenSource::Store => Source::Store,
        }
    }
}

/// One line for people, the core's wording: the OAuth error code first when there is
/// one (`invalid_client (HTTP 401): …`), else the kind of failure.
pub fn describe(error: &ProviderError) -> String {
    token_provider_core::Error::from(error.clone()).to_string()
}

/// `fresh`, `memory` or `store`, as in the audit log.
pub fn source_name(source: TokenSource) -> &'static str {
    Source::from(source).as_str()
}
