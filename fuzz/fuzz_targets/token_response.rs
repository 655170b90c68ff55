//! The token response parser: any status, content type and body. It must never panic,
//! and a token it accepts must be sendable as a header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_provider_core::{HttpResponse, internal::response::parse, settings::Lifetimes};

fuzz_target!(|data: &[u8]| {
    // Bytes 0-1: status; byte 2: content type; the rest: the body.
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 500;
    let content_type: &[u8] = match data[2] % 4 {
        0 => b"application/json",
        1 => b"text/html",
        2 => b"application/json; charset=utf-8",
        _ => b"",
    };
    let resp = HttpResponse {
        status,
        headers: vec![("content-type".into(), content_type.to_vec())],
        body: data[3..].to_vec(),
    };
    let limits = Lifetimes {
        default_expires_in: 300,
        max_expires_in: 86_400,
    };
    match parse(&resp, &["read".to_string()], limits) {
        Ok(t) => {
            assert!((200..300).contains(&status));
            let token = t.access_token.expose();
            assert!(!token.is_empty() && token.len() <= 16 * 1024);
            assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            // Never 0 (an unusable expires_in means the default) and never over the cap.
            assert!(t.expires_in >= 1 && t.expires_in <= 86_400);
        }
        Err(e) => {
            // Error text is one clean line whatever the server sent.
            assert!(!e.to_string().chars().any(char::is_control));
        }
    }
});
