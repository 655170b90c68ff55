//! The discovery document parser (RFC 8414 / OpenID Connect metadata): any bytes. It
//! must never panic, and a document it accepts must name exactly the configured issuer
//! and give a token endpoint that is an https URL the component would send to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_provider_core::{
    Scheme,
    internal::{MAX_DOCUMENT_BYTES, MAX_LIST, metadata::parse, parse_url},
};

const ISSUER: &str = "https://login.example.com/t1";

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse(data, ISSUER, false) else {
        return;
    };
    assert!(data.len() <= MAX_DOCUMENT_BYTES);
    let doc: serde_json::Value = serde_json::from_slice(data).expect("accepted: JSON");
    assert_eq!(doc["issuer"], ISSUER);
    let url = parse_url(&m.token_endpoint).expect("accepted: a URL");
    assert_eq!(url.origin.scheme, Scheme::Https);
    assert!(m.auth_methods.len() <= MAX_LIST);
    assert!(m.signing_algs.as_ref().is_none_or(|a| a.len() <= MAX_LIST));
});
