//! A consumer component: imports the provider, exports `report`. Compose it with
//! `token_provider.wasm` (`wac plug consumer.wasm --plug token_provider.wasm`).

wit_bindgen::generate!({
    // Our world, plus the provider's contract from the repository's wit/ directory.
    path: ["../../wit", "wit"],
    world: "example:consumer/consumer",
    generate_all,
});

use exports::example::consumer::report::Guest;
use oauth2::token_provider::provider::get_token;
use oauth2::token_provider::types::{Error, TokenRequest, TokenSource};

struct Consumer;
export!(Consumer);

impl Guest for Consumer {
    fn describe_token(scopes: Vec<String>) -> Result<String, String> {
        let request = TokenRequest {
            scopes: Some(scopes),
            audience: None,
            resources: None,
            force_refresh: false,
        };
        match get_token(&request) {
            Ok(t) => Ok(format!(
                "{} token, {} bytes, scopes [{}], expires_at {}, source {}",
                t.token_type,
                t.token.len(),
                t.scopes.join(" "),
                t.expires_at,
                match t.source {
                    TokenSource::Fresh => "fresh",
                    TokenSource::Memory => "memory",
                    TokenSource::Store => "store",
                }
            )),
            Err(Error::Oauth(e)) => Err(format!("oauth error {} (HTTP {})", e.error, e.status)),
            Err(other) => Err(format!("{other:?}")),
        }
    }
}
