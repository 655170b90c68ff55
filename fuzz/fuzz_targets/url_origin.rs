//! The authorized client's URL and origin checks: any URL text. It must never panic,
//! must accept no URL that `http::Uri` refuses or reads otherwise, and a URL it lets
//! through must go to exactly the allowed origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use token_provider_core::{
    ApiRequest, Settings,
    internal::{parse_url, prepare},
};

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        Settings::from_pairs(&[
            ("token_url", "https://auth.example.com/token"),
            ("client_id", "svc"),
            ("client_secret", "fuzz-secret"),
            (
                "allowed_origins",
                "https://api.example.com,https://api.example.com:8443",
            ),
        ])
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_url(text);
    // Whatever the parser accepts, http::Uri accepts and reads the same way.
    if let Err(e) = token_provider_core::uri_reference::agrees(text) {
        panic!("{e}");
    }
    let req = ApiRequest {
        method: "GET".into(),
        url: text.into(),
        headers: vec![],
        body: None,
        token: None,
    };
    if let Ok(prepared) = prepare(&settings().send, &req) {
        let origin = &prepared.url.origin;
        assert!(settings().send.allowed_origins.contains(origin), "{text:?}");
        assert_eq!(origin.host, "api.example.com", "{text:?}");
        // What is sent names the same host and port.
        let authority = prepared.url.authority.as_str();
        assert!(
            authority == "api.example.com"
                || authority == format!("api.example.com:{}", origin.port),
            "{text:?} -> {authority}"
        );
        assert!(prepared.url.path_and_query.starts_with('/'));
        // Fragments are refused anywhere; `@` may appear in a path or query (the
        // authority comparison above is what rules out userinfo).
        assert!(!text.contains('#'), "{text:?}");
    }
});
