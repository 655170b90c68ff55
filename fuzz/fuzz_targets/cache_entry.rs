//! The cache entry decoder: arbitrary stored bytes must be a clean rejection (never a
//! panic), and a tampered copy of a real entry must never open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use token_provider_core::{
    AccessToken, Settings, TokenRequest,
    internal::{CacheKey, Entry, TokenParams, seal},
};

fn fixture() -> &'static (Settings, CacheKey, Vec<u8>) {
    static F: OnceLock<(Settings, CacheKey, Vec<u8>)> = OnceLock::new();
    F.get_or_init(|| {
        let s = Settings::from_pairs(&[
            ("token_url", "https://auth.example.com/token"),
            ("client_id", "svc"),
            ("client_secret", "fuzz-secret"),
        ])
        .unwrap();
        let params = TokenParams::resolve(&TokenRequest::default(), &s.provider.client).unwrap();
        let key = s.provider.cache_key(&params);
        let entry = Entry {
            access_token: AccessToken::new("cached"),
            scopes: vec!["read".into()],
            issued_at_ms: 1,
            expires_at_ms: 2,
            dpop: None,
        };
        let sealed = seal::seal(&entry, &s.provider.cache.secret, &key, [9; 24]);
        (s, key, sealed)
    })
}

fuzz_target!(|data: &[u8]| {
    let (s, key, sealed) = fixture();
    // Arbitrary bytes: whatever the outcome, no panic.
    let _ = seal::open(data, &s.provider.cache.secret, key);
    // The real entry with the input XORed in: opens only if nothing changed.
    let mut tampered = sealed.clone();
    let mut changed = false;
    for (i, b) in data.iter().enumerate().take(tampered.len()) {
        tampered[i] ^= b;
        changed |= *b != 0;
    }
    let opened = seal::open(&tampered, &s.provider.cache.secret, key);
    assert_eq!(opened.is_ok(), !changed);
});
