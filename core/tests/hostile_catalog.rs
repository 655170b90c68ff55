//! The hostile-input catalog: token responses, authorized-client inputs and cache
//! entries that a broken or malicious server, caller or store could produce, each a
//! test with the typed error (or the accepted token) it must give. Native and fast:
//! these run the core's parsers directly; the integration suites run the same code
//! inside the component.

use token_provider_core::{
    AccessToken, ApiRequest, HttpResponse, Settings, TokenRequest,
    internal::{
        CacheKey, Cooldown, Entry, Rejected, Secret, TokenParams, prepare, response,
        response::parse, roles, seal,
    },
    settings::Lifetimes,
};

const LIMITS: Lifetimes = Lifetimes {
    default_expires_in: 300,
    max_expires_in: 86_400,
};

enum Want {
    /// Accepted: token, expires_in, scopes.
    Token(&'static str, u64, &'static [&'static str]),
    /// Refused with this error kind (`Error::kind`) and, for `oauth`, this code.
    Error(&'static str, Option<&'static str>),
}
use Want::*;

fn check_response(status: u16, content_type: Option<&str>, body: &[u8], want: Want) {
    let resp = HttpResponse {
        status,
        headers: content_type
            .map(|c| vec![("content-type".to_string(), c.as_bytes().to_vec())])
            .unwrap_or_default(),
        body: body.to_vec(),
    };
    // As a provider with `dpop = off` judges it (a DPoP token is of no use to it).
    let got = parse(&resp, &["read".to_string()], LIMITS)
        .and_then(|t| response::bound(t.token_type, None).map(|_| t));
    match (want, got) {
        (Token(token, expires_in, scopes), Ok(t)) => {
            assert_eq!(t.access_token.expose(), token);
            assert_eq!(t.expires_in, expires_in);
            assert_eq!(t.scopes, scopes);
        }
        (Error(kind, code), Err(e)) => {
            assert_eq!(e.kind(), kind, "{e}");
            if let (Some(code), token_provider_core::Error::OAuth(o)) = (code, &e) {
                assert_eq!(o.error, code);
            }
            // Whatever the body held, the error text is one clean line.
            let text = e.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        (Token(..), Err(e)) => panic!("expected a token, got {e}"),
        (Error(kind, _), Ok(_)) => panic!("expected a {kind} error, got a token"),
    }
}

macro_rules! responses {
    ($($name:ident: $status:expr, $ct:expr, $body:expr => $want:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check_response($status, $ct, AsRef::<[u8]>::as_ref(&$body), $want);
            }
        )*
    };
}

const JSON: Option<&str> = Some("application/json");

fn nested(depth: usize) -> String {
    format!(
        r#"{{"access_token":"t","x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn long_token(len: usize) -> String {
    format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "a".repeat(len)
    )
}

responses! {
    // --- accepted, leniently -------------------------------------------------------
    r01_standard: 200, JSON, r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"# => Token("abc", 3600, &["read"]);
    r02_token_type_lowercase: 200, JSON, r#"{"access_token":"abc","token_type":"bearer","expires_in":60}"# => Token("abc", 60, &["read"]);
    r03_token_type_uppercase: 200, JSON, r#"{"access_token":"abc","token_type":"BEARER","expires_in":60}"# => Token("abc", 60, &["read"]);
    r04_token_type_missing: 200, JSON, r#"{"access_token":"abc","expires_in":60}"# => Token("abc", 60, &["read"]);
    r05_token_type_null: 200, JSON, r#"{"access_token":"abc","token_type":null,"expires_in":60}"# => Token("abc", 60, &["read"]);
    r06_expires_in_numeric_string: 200, JSON, r#"{"access_token":"abc","expires_in":"3600"}"# => Token("abc", 3600, &["read"]);
    r07_expires_in_string_with_spaces: 200, JSON, r#"{"access_token":"abc","expires_in":" 90 "}"# => Token("abc", 90, &["read"]);
    r08_expires_in_missing_is_the_default: 200, JSON, r#"{"access_token":"abc"}"# => Token("abc", 300, &["read"]);
    r09_expires_in_null_is_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":null}"# => Token("abc", 300, &["read"]);
    r10_expires_in_huge_is_clamped: 200, JSON, r#"{"access_token":"abc","expires_in":1000000000000}"# => Token("abc", 86_400, &["read"]);
    r11_expires_in_u64_max_is_clamped: 200, JSON, r#"{"access_token":"abc","expires_in":18446744073709551615}"# => Token("abc", 86_400, &["read"]);
    r12_expires_in_huge_string_is_clamped: 200, JSON, r#"{"access_token":"abc","expires_in":"99999999999999999999"}"# => Token("abc", 86_400, &["read"]);
    r13_expires_in_integral_float: 200, JSON, r#"{"access_token":"abc","expires_in":3600.0}"# => Token("abc", 3600, &["read"]);
    r14_expires_in_fraction_rounds_down: 200, JSON, r#"{"access_token":"abc","expires_in":1.9}"# => Token("abc", 1, &["read"]);
    r15_expires_in_exponent: 200, JSON, r#"{"access_token":"abc","expires_in":3.6e3}"# => Token("abc", 3600, &["read"]);
    r16_expires_in_zero_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":0}"# => Token("abc", 300, &["read"]);
    r17_content_type_text_plain: 200, Some("text/plain"), r#"{"access_token":"abc","expires_in":60}"# => Token("abc", 60, &["read"]);
    r18_content_type_missing: 200, None, r#"{"access_token":"abc","expires_in":60}"# => Token("abc", 60, &["read"]);
    r19_content_type_with_charset: 200, Some("application/json; charset=utf-8"), r#"{"access_token":"abc","expires_in":60}"# => Token("abc", 60, &["read"]);
    r20_content_type_html_but_json_body: 200, Some("text/html"), r#"{"access_token":"abc","expires_in":60}"# => Token("abc", 60, &["read"]);
    r21_utf8_bom: 200, JSON, "\u{feff}{\"access_token\":\"abc\",\"expires_in\":60}" => Token("abc", 60, &["read"]);
    r22_surrounding_whitespace: 200, JSON, " \r\n\t{\"access_token\":\"abc\",\"expires_in\":60}\n " => Token("abc", 60, &["read"]);
    r23_unknown_members_ignored: 200, JSON, r#"{"access_token":"abc","expires_in":60,"refresh_token":"r","id_token":"i","x":{"y":[1,2]}}"# => Token("abc", 60, &["read"]);
    r24_scope_narrowed_and_sorted: 200, JSON, r#"{"access_token":"abc","scope":"write read read"}"# => Token("abc", 300, &["read", "write"]);
    r25_scope_empty_string_grants_nothing: 200, JSON, r#"{"access_token":"abc","scope":""}"# => Token("abc", 300, &[]);
    r26_scope_null_means_requested: 200, JSON, r#"{"access_token":"abc","scope":null}"# => Token("abc", 300, &["read"]);
    r27_duplicate_keys_last_one_wins: 200, JSON, r#"{"access_token":"first","access_token":"second"}"# => Token("second", 300, &["read"]);
    r28_error_member_null_is_no_error: 200, JSON, r#"{"access_token":"abc","error":null}"# => Token("abc", 300, &["read"]);
    r29_jwt_shaped_token: 200, JSON, r#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_","token_type":"Bearer"}"# => Token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_", 300, &["read"]);
    r30_token_at_the_16k_limit: 200, JSON, long_token(16 * 1024) => Token(Box::leak("a".repeat(16 * 1024).into_boxed_str()), 300, &["read"]);
    r31_201_created: 201, JSON, r#"{"access_token":"abc"}"# => Token("abc", 300, &["read"]);

    // --- not a JSON object -----------------------------------------------------------
    r32_plain_text: 200, Some("text/plain"), "access granted" => Error("invalid_response", None);
    r33_form_encoded: 200, Some("application/x-www-form-urlencoded"), "access_token=abc&token_type=bearer" => Error("invalid_response", None);
    r34_json_array: 200, JSON, r#"[{"access_token":"abc"}]"# => Error("invalid_response", None);
    r35_json_string: 200, JSON, r#""abc""# => Error("invalid_response", None);
    r36_json_number: 200, JSON, "42" => Error("invalid_response", None);
    r37_json_null: 200, JSON, "null" => Error("invalid_response", None);
    r38_empty_body: 200, JSON, "" => Error("invalid_response", None);
    r39_whitespace_body: 200, JSON, "  \n " => Error("invalid_response", None);
    r40_non_utf8: 200, JSON, b"{\"access_token\":\"\xff\xfe\"}" => Error("invalid_response", None);
    r41_truncated_json: 200, JSON, r#"{"access_token":"abc","expires_in":36"# => Error("invalid_response", None);
    r42_trailing_garbage: 200, JSON, r#"{"access_token":"abc"} <html>"# => Error("invalid_response", None);
    r43_two_objects: 200, JSON, r#"{"access_token":"a"}{"access_token":"b"}"# => Error("invalid_response", None);
    r44_deep_nesting_is_refused_not_a_stack_overflow: 200, JSON, nested(100_000) => Error("invalid_response", None);
    r45_moderate_nesting_in_an_unknown_member_is_fine: 200, JSON, nested(100) => Token("t", 300, &["read"]);
    r46_number_out_of_range: 200, JSON, r#"{"access_token":"abc","expires_in":1e400}"# => Error("invalid_response", None);
    r47_single_quotes: 200, JSON, "{'access_token':'abc'}" => Error("invalid_response", None);
    r48_comment_in_json: 200, JSON, "{\"access_token\":\"abc\" /* hi */}" => Error("invalid_response", None);
    r49_html_200_page: 200, Some("text/html"), "<html><body>Login</body></html>" => Error("invalid_response", None);
    r50_204_no_content: 204, None, "" => Error("invalid_response", None);

    // --- wrong types and values ------------------------------------------------------
    r51_access_token_missing: 200, JSON, r#"{"token_type":"Bearer"}"# => Error("invalid_response", None);
    r52_access_token_null: 200, JSON, r#"{"access_token":null}"# => Error("invalid_response", None);
    r53_access_token_number: 200, JSON, r#"{"access_token":12345}"# => Error("invalid_response", None);
    r54_access_token_array: 200, JSON, r#"{"access_token":["abc"]}"# => Error("invalid_response", None);
    r55_access_token_object: 200, JSON, r#"{"access_token":{"v":"abc"}}"# => Error("invalid_response", None);
    r56_access_token_bool: 200, JSON, r#"{"access_token":true}"# => Error("invalid_response", None);
    r57_access_token_empty: 200, JSON, r#"{"access_token":""}"# => Error("invalid_response", None);
    r58_access_token_over_16k: 200, JSON, long_token(16 * 1024 + 1) => Error("invalid_response", None);
    r59_access_token_enormous: 200, JSON, long_token(60_000) => Error("invalid_response", None);
    r60_access_token_with_cr_lf: 200, JSON, r#"{"access_token":"abc\r\nX-Evil: 1"}"# => Error("invalid_response", None);
    r61_access_token_with_lf: 200, JSON, r#"{"access_token":"abc\ndef"}"# => Error("invalid_response", None);
    r62_access_token_with_nul: 200, JSON, r#"{"access_token":"abc\u0000def"}"# => Error("invalid_response", None);
    r63_access_token_with_space: 200, JSON, r#"{"access_token":"abc def"}"# => Error("invalid_response", None);
    r64_access_token_with_tab: 200, JSON, r#"{"access_token":"abc\tdef"}"# => Error("invalid_response", None);
    r65_access_token_with_del: 200, JSON, r#"{"access_token":"abc\u007fdef"}"# => Error("invalid_response", None);
    r66_access_token_non_ascii: 200, JSON, r#"{"access_token":"abcé"}"# => Error("invalid_response", None);
    r67_access_token_escape_sequence: 200, JSON, r#"{"access_token":"\u001b[31mred"}"# => Error("invalid_response", None);
    r68_token_type_mac: 200, JSON, r#"{"access_token":"abc","token_type":"mac"}"# => Error("invalid_response", None);
    r69_token_type_dpop: 200, JSON, r#"{"access_token":"abc","token_type":"DPoP"}"# => Error("invalid_response", None);
    r70_token_type_empty: 200, JSON, r#"{"access_token":"abc","token_type":""}"# => Error("invalid_response", None);
    r71_token_type_number: 200, JSON, r#"{"access_token":"abc","token_type":1}"# => Error("invalid_response", None);
    r72_token_type_bearer_with_space: 200, JSON, r#"{"access_token":"abc","token_type":"Bearer "}"# => Error("invalid_response", None);
    r73_expires_in_negative_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":-1}"# => Token("abc", 300, &["read"]);
    r74_expires_in_negative_float_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":-0.5}"# => Token("abc", 300, &["read"]);
    r75_expires_in_word_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":"soon"}"# => Token("abc", 300, &["read"]);
    r76_expires_in_negative_string_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":"-60"}"# => Token("abc", 300, &["read"]);
    r77_expires_in_float_string_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":"3600.0"}"# => Token("abc", 300, &["read"]);
    r78_expires_in_empty_string_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":""}"# => Token("abc", 300, &["read"]);
    r79_expires_in_bool_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":true}"# => Token("abc", 300, &["read"]);
    r80_expires_in_object_means_the_default: 200, JSON, r#"{"access_token":"abc","expires_in":{"s":60}}"# => Token("abc", 300, &["read"]);
    r81_scope_number: 200, JSON, r#"{"access_token":"abc","scope":7}"# => Error("invalid_response", None);
    r82_scope_array: 200, JSON, r#"{"access_token":"abc","scope":["read"]}"# => Error("invalid_response", None);
    r83_body_over_64k: 200, JSON, format!(r#"{{"access_token":"abc","pad":"{}"}}"#, "x".repeat(70_000)) => Error("invalid_response", None);

    // --- errors, in and out of a 200 -------------------------------------------------
    r84_error_inside_a_200: 200, JSON, r#"{"error":"invalid_scope"}"# => Error("oauth", Some("invalid_scope"));
    r85_error_and_token_in_a_200: 200, JSON, r#"{"access_token":"abc","error":"access_denied"}"# => Error("oauth", Some("access_denied"));
    r86_invalid_client_400: 400, JSON, r#"{"error":"invalid_client","error_description":"no such client"}"# => Error("oauth", Some("invalid_client"));
    r87_invalid_client_401: 401, JSON, r#"{"error":"invalid_client"}"# => Error("oauth", Some("invalid_client"));
    r88_error_not_a_string: 400, JSON, r#"{"error":5}"# => Error("oauth", Some("invalid_error_member"));
    r89_error_empty: 400, JSON, r#"{"error":""}"# => Error("oauth", Some("unknown_error"));
    r90_error_with_control_characters: 400, JSON, r#"{"error":"bad\r\nX-Injected: yes","error_description":"line1\nline2\u001b[0m"}"# => Error("oauth", Some("bad??X-Injected: yes"));
    r91_error_description_enormous: 400, JSON, format!(r#"{{"error":"invalid_request","error_description":"{}"}}"#, "d".repeat(50_000)) => Error("oauth", Some("invalid_request"));
    r92_503_temporarily_unavailable: 503, JSON, r#"{"error":"temporarily_unavailable"}"# => Error("oauth", Some("temporarily_unavailable"));
    r93_400_html: 400, Some("text/html"), "<html>Bad Request</html>" => Error("server", None);
    r94_500_json_without_error: 500, JSON, r#"{"message":"boom"}"# => Error("server", None);
    r95_502_html: 502, Some("text/html"), "<html><h1>502 Bad Gateway</h1></html>" => Error("server", None);
    r96_302_redirect: 302, Some("text/html"), "<a href=\"https://evil.test/token\">moved</a>" => Error("server", None);
    r97_429_text: 429, Some("text/plain"), "rate limited" => Error("server", None);
    r98_418: 418, Some("text/plain"), "teapot" => Error("server", None);
    r99_100_informational: 100, None, "" => Error("server", None);
}

// --- the authorized client's inputs ------------------------------------------------

fn settings(origins: &str, insecure: bool) -> Settings {
    Settings::from_pairs(&[
        ("token_url", "https://auth.example.com/token"),
        ("client_id", "svc"),
        ("client_secret", "s3cret"),
        ("allowed_origins", origins),
        ("allow_insecure_http", &insecure.to_string()),
    ])
    .unwrap()
}

fn check_request(url: &str, headers: &[(&str, &[u8])], allowed: bool) {
    check_method("GET", url, headers, allowed);
}

fn check_method(method: &str, url: &str, headers: &[(&str, &[u8])], allowed: bool) {
    let s = settings(
        "https://api.example.com,https://api.example.com:8443",
        false,
    );
    let req = ApiRequest {
        method: method.into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        body: None,
        token: None,
    };
    match prepare(&s.send, &req) {
        Ok(_) => assert!(allowed, "{url} {headers:?} was allowed"),
        Err(e) => {
            assert!(!allowed, "{url} refused: {e}");
            assert_eq!(e.kind(), "refused", "{e}");
            assert!(!e.to_string().chars().any(char::is_control), "{e}");
        }
    }
}

macro_rules! requests {
    ($($name:ident: $url:expr, $headers:expr => $allowed:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check_request($url, $headers, $allowed);
            }
        )*
    };
}

const NO: &[(&str, &[u8])] = &[];

requests! {
    q01_allowed_origin: "https://api.example.com/v1/orders?x=1", NO => true;
    q02_allowed_other_port: "https://api.example.com:8443/v1", NO => true;
    q03_default_port_spelled_out: "https://api.example.com:443/v1", NO => true;
    q04_host_case_insensitive: "https://API.Example.COM/v1", NO => true;
    q05_suffix_lookalike: "https://api.example.com.evil.test/v1", NO => false;
    q06_prefix_lookalike: "https://evilapi.example.com/v1", NO => false;
    q07_userinfo_lookalike: "https://api.example.com@evil.test/v1", NO => false;
    q08_userinfo: "https://user:pass@api.example.com/v1", NO => false;
    q09_other_port: "https://api.example.com:444/v1", NO => false;
    q10_plain_http: "http://api.example.com/v1", NO => false;
    q11_other_scheme: "ftp://api.example.com/v1", NO => false;
    q12_idn_host: "https://bücher.example.com/v1", NO => false;
    q13_punycode_not_allowed: "https://xn--bcher-kva.example.com/v1", NO => false;
    q14_fragment: "https://api.example.com/v1#frag", NO => false;
    q15_no_scheme: "api.example.com/v1", NO => false;
    q16_empty: "", NO => false;
    q17_spaces: "https://api.example.com/v 1", NO => false;
    q18_crlf_in_url: "https://api.example.com/v1\r\nX-Evil: 1", NO => false;
    q19_backslash_host_trick: "https://api.example.com\\@evil.test/", NO => false;
    q20_ip_literal: "https://127.0.0.1/v1", NO => false;
    q21_trailing_dot_host: "https://api.example.com./v1", NO => false;
    q22_port_out_of_range: "https://api.example.com:99999/v1", NO => false;
    q23_caller_authorization: "https://api.example.com/v1", &[("Authorization", b"Bearer stolen")] => false;
    q24_caller_authorization_any_case: "https://api.example.com/v1", &[("aUtHoRiZaTiOn", b"x")] => false;
    q25_header_value_crlf: "https://api.example.com/v1", &[("X-Trace", b"a\r\nX-Evil: 1")] => false;
    q26_header_value_nul: "https://api.example.com/v1", &[("X-Trace", b"a\0b")] => false;
    q27_header_name_with_space: "https://api.example.com/v1", &[("X Trace", b"a")] => false;
    q28_header_name_with_colon: "https://api.example.com/v1", &[("X-Trace:", b"a")] => false;
    q29_header_name_empty: "https://api.example.com/v1", &[("", b"a")] => false;
    q31_junk_after_the_port_found_by_fuzzing: "https://api.example.com:42p.comi.examhhhh=[]hhp1", NO => false;
    q32_port_with_a_sign: "https://api.example.com:+443/v1", NO => false;
    q30_ordinary_headers: "https://api.example.com/v1", &[("Accept", b"application/json"), ("X-Request-Id", b"42")] => true;
    q33_host_header: "https://api.example.com/v1", &[("Host", b"evil.test")] => false;
    q34_content_length_header: "https://api.example.com/v1", &[("Content-Length", b"0")] => false;
    q35_transfer_encoding_header: "https://api.example.com/v1", &[("Transfer-Encoding", b"chunked")] => false;
    q36_connection_header: "https://api.example.com/v1", &[("Connection", b"close")] => false;
    q37_upgrade_header: "https://api.example.com/v1", &[("Upgrade", b"websocket")] => false;
    q38_te_header: "https://api.example.com/v1", &[("TE", b"trailers")] => false;
}

#[test]
fn q39_trace_would_echo_the_token() {
    check_method("TRACE", "https://api.example.com/v1", NO, false);
}

#[test]
fn q40_connect_would_open_a_tunnel() {
    check_method("CONNECT", "https://api.example.com/v1", NO, false);
}

#[test]
fn q41_lower_case_trace() {
    check_method("trace", "https://api.example.com/v1", NO, false);
}

// --- cache entries -----------------------------------------------------------------

fn key(s: &Settings, scope: &str) -> CacheKey {
    let req = TokenRequest {
        scopes: Some(vec![scope.to_string()]),
        ..Default::default()
    };
    s.provider
        .cache_key(&TokenParams::resolve(&req, &s.provider.client).unwrap())
}

fn entry() -> Entry {
    Entry {
        access_token: AccessToken::new("cached-token"),
        scopes: vec!["read".into()],
        issued_at_ms: 1_000_000,
        expires_at_ms: 4_600_000,
        dpop: None,
    }
}

#[test]
fn c01_every_truncation_is_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    let sealed = seal::seal(&entry(), &s.provider.cache.secret, &k, [1; 24]);
    for cut in 0..sealed.len() {
        assert!(
            seal::open(&sealed[..cut], &s.provider.cache.secret, &k).is_err(),
            "{cut}"
        );
    }
}

#[test]
fn c02_every_single_bit_flip_is_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    let sealed = seal::seal(&entry(), &s.provider.cache.secret, &k, [2; 24]);
    for bit in 0..sealed.len() * 8 {
        let mut b = sealed.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(
            seal::open(&b, &s.provider.cache.secret, &k).is_err(),
            "bit {bit}"
        );
    }
}

#[test]
fn c03_an_entry_from_another_key_is_rejected() {
    let s = settings("", false);
    let sealed = seal::seal(
        &entry(),
        &s.provider.cache.secret,
        &key(&s, "read"),
        [3; 24],
    );
    assert_eq!(
        seal::open(&sealed, &s.provider.cache.secret, &key(&s, "write")),
        Err(Rejected::Undecryptable)
    );
}

#[test]
fn c04_an_entry_under_another_secret_is_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    let sealed = seal::seal(&entry(), &s.provider.cache.secret, &k, [4; 24]);
    assert_eq!(
        seal::open(&sealed, &Secret::new("other"), &k),
        Err(Rejected::Undecryptable)
    );
}

#[test]
fn c05_an_older_or_unknown_format_version_is_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    let mut sealed = seal::seal(&entry(), &s.provider.cache.secret, &k, [5; 24]);
    sealed[..4].copy_from_slice(b"TPC0");
    assert_eq!(
        seal::open(&sealed, &s.provider.cache.secret, &k),
        Err(Rejected::Format)
    );
}

#[test]
fn c06_plaintext_json_and_garbage_are_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    for junk in [
        &br#"{"access_token":"injected","expires_at_ms":99999999999999}"#[..],
        b"",
        b"TPC1",
        &[0u8; 200][..],
        b"42",
    ] {
        assert!(seal::open(junk, &s.provider.cache.secret, &k).is_err());
    }
}

#[test]
fn c07_a_sealed_entry_whose_expiry_precedes_its_issue_is_rejected() {
    let s = settings("", false);
    let k = key(&s, "read");
    let backwards = Entry {
        issued_at_ms: 5_000,
        expires_at_ms: 4_000,
        dpop: None,
        ..entry()
    };
    let sealed = seal::seal(&backwards, &s.provider.cache.secret, &k, [7; 24]);
    assert_eq!(
        seal::open(&sealed, &s.provider.cache.secret, &k),
        Err(Rejected::Corrupt)
    );
}

#[test]
fn c08_a_cooldown_record_cannot_pass_for_a_token() {
    let s = settings("", false);
    let cooldown = Cooldown {
        outage: false,
        kind: "oauth".into(),
        error: "invalid_client".into(),
        description: None,
        status: 401,
        until_ms: 1,
    };
    let client = s.provider.client_key();
    let sealed = seal::seal_value(
        &cooldown,
        &s.provider.cache.secret,
        &client.context(roles::FAILURE),
        [8; 24],
    );
    assert!(seal::open(&sealed, &s.provider.cache.secret, &key(&s, "read")).is_err());
    assert!(seal::open(&sealed, &s.provider.cache.secret, &client).is_err());
}

#[test]
fn c09_a_holder_record_pause_or_token_sealed_for_one_role_opens_as_no_other() {
    use token_provider_core::internal::Holder;
    let s = settings("", false);
    let k = key(&s, "read");
    let holder = Holder {
        slot: 1,
        generation: 0,
        started_ms: 5,
    };
    let as_holder = seal::seal_value(
        &holder,
        &s.provider.cache.secret,
        &k.context(roles::HOLDER),
        [1; 24],
    );
    assert!(seal::open(&as_holder, &s.provider.cache.secret, &k).is_err());
    for role in [roles::PAUSE, roles::FAILURE, roles::TOKEN] {
        assert!(
            seal::open_value::<Holder>(&as_holder, &s.provider.cache.secret, &k.context(role))
                .is_err(),
            "{role}"
        );
    }
    // The same record for another cache key does not open either.
    let other = key(&s, "write");
    assert!(
        seal::open_value::<Holder>(
            &as_holder,
            &s.provider.cache.secret,
            &other.context(roles::HOLDER)
        )
        .is_err()
    );
}

#[test]
fn c10_key_names_reveal_neither_client_scopes_nor_url_and_differ_per_credential() {
    let s = settings("", false);
    let k = key(&s, "orders:read");
    for name in [
        k.store_key(),
        k.lease(7, 0),
        k.lease_holder(),
        k.refresh_pause(),
    ] {
        for secret_or_guess in ["svc", "orders", "auth.example.com", "s3cret"] {
            assert!(!name.contains(secret_or_guess), "{name}");
        }
    }
    let rotated = Settings::from_pairs(&[
        ("token_url", "https://auth.example.com/token"),
        ("client_id", "svc"),
        ("client_secret", "rotated"),
    ])
    .unwrap();
    assert_ne!(k.store_key(), key(&rotated, "orders:read").store_key());
}

// --- requests whose tokens would go where they are not meant for ----------------------

fn bound(audience: Option<&str>, resource: Option<&str>, url: &str) -> bool {
    let s = Settings::from_pairs(&[
        ("token_url", "https://auth.example.com/token"),
        ("client_id", "svc"),
        ("client_secret", "s3cret"),
        (
            "allowed_origins",
            "https://internal.example,https://partner.example",
        ),
        ("origin_audiences", "https://internal.example=internal"),
    ])
    .unwrap();
    let req = TokenRequest {
        audience: audience.map(str::to_string),
        resources: resource.map(|r| vec![r.to_string()]),
        ..Default::default()
    };
    let origin = token_provider_core::internal::parse_url(url)
        .unwrap()
        .origin;
    token_provider_core::internal::bound_to(&s.send, &s.provider.client, &req, &origin).is_ok()
}

#[test]
fn d01_an_internal_audience_never_goes_to_a_partner() {
    assert!(bound(Some("internal"), None, "https://internal.example/a"));
    assert!(!bound(Some("internal"), None, "https://partner.example/a"));
    assert!(!bound(Some("INTERNAL"), None, "https://internal.example/a"));
}

#[test]
fn d02_a_resource_goes_to_its_own_origin_only() {
    assert!(bound(
        None,
        Some("https://partner.example/api"),
        "https://partner.example/x"
    ));
    assert!(!bound(
        None,
        Some("https://partner.example/api"),
        "https://internal.example/x"
    ));
    assert!(!bound(
        None,
        Some("https://partner.example:8443/"),
        "https://partner.example/x"
    ));
    assert!(!bound(
        None,
        Some("urn:example:api"),
        "https://partner.example/x"
    ));
}

#[test]
fn d03_oversized_or_too_many_request_values_are_refused() {
    let s = settings("", false);
    let refused = |req: TokenRequest| {
        matches!(
            TokenParams::resolve(&req, &s.provider.client),
            Err(token_provider_core::Error::Refused(_))
        )
    };
    assert!(refused(TokenRequest {
        scopes: Some((0..65).map(|i| format!("s{i}")).collect()),
        ..Default::default()
    }));
    assert!(refused(TokenRequest {
        audience: Some("a".repeat(1025)),
        ..Default::default()
    }));
    assert!(refused(TokenRequest {
        audience: Some("aud\u{0}x".into()),
        ..Default::default()
    }));
    assert!(refused(TokenRequest {
        resources: Some((0..17).map(|i| format!("https://r{i}.example/")).collect()),
        ..Default::default()
    }));
}

// ---- Discovery documents (RFC 8414 / OpenID Connect metadata) ----
//
// What a hostile or broken issuer (or whoever answers for it) could serve as its
// metadata: each is a typed `metadata::Problem`, never a panic, never a token
// endpoint taken on trust. `fuzz/make_seeds.py` turns the `m..` bodies into seeds of
// the `discovery_document` fuzz target.

use token_provider_core::internal::{Problem, metadata};

const ISSUER: &str = "https://login.example.com/t1";

fn doc_problem(body: &str) -> Result<metadata::Metadata, Problem> {
    metadata::parse(body.as_bytes(), ISSUER, false)
}

#[test]
fn m_catalog_every_hostile_document_is_a_typed_problem() {
    let mismatch = |found: &str| Problem::IssuerMismatch {
        expected: ISSUER.into(),
        found: found.into(),
    };
    let cases: &[(&str, &str, Problem)] = &[
        (
            "m01_html_login_page",
            r#"<!doctype html><title>Sign in</title>"#,
            Problem::NotAnObject,
        ),
        (
            "m02_json_array",
            r#"[{"issuer":"https://login.example.com/t1"}]"#,
            Problem::NotAnObject,
        ),
        (
            "m03_truncated",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://lo"#,
            Problem::NotAnObject,
        ),
        (
            "m04_no_issuer",
            r#"{"token_endpoint":"https://login.example.com/t1/token"}"#,
            Problem::NoIssuer,
        ),
        (
            "m05_issuer_number",
            r#"{"issuer":1,"token_endpoint":"https://login.example.com/t1/token"}"#,
            Problem::NoIssuer,
        ),
        (
            "m06_other_issuer",
            r#"{"issuer":"https://evil.example/t1","token_endpoint":"https://evil.example/token"}"#,
            mismatch("https://evil.example/t1"),
        ),
        (
            "m07_trailing_slash",
            r#"{"issuer":"https://login.example.com/t1/","token_endpoint":"https://login.example.com/t1/token"}"#,
            mismatch("https://login.example.com/t1/"),
        ),
        (
            "m08_case_differs",
            r#"{"issuer":"https://Login.example.com/t1","token_endpoint":"https://login.example.com/t1/token"}"#,
            mismatch("https://Login.example.com/t1"),
        ),
        (
            "m09_cyrillic_lookalike",
            r#"{"issuer":"https://lоgin.example.com/t1","token_endpoint":"https://login.example.com/t1/token"}"#,
            mismatch("https://lоgin.example.com/t1"),
        ),
        (
            "m10_log_injection",
            "{\"issuer\":\"https://evil.example/\\r\\n{\\\"event\\\":\\\"forged\\\"}\",\"token_endpoint\":\"https://a/t\"}",
            mismatch("https://evil.example/  {\"event\":\"forged\"}"),
        ),
        (
            "m11_no_token_endpoint",
            r#"{"issuer":"https://login.example.com/t1"}"#,
            Problem::NoTokenEndpoint,
        ),
        (
            "m12_token_endpoint_object",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":{"url":"https://a/t"}}"#,
            Problem::NoTokenEndpoint,
        ),
        (
            "m13_http_token_endpoint",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"http://login.example.com/t1/token"}"#,
            Problem::InsecureTokenEndpoint,
        ),
        (
            "m14_userinfo_endpoint",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://user:pw@login.example.com/token"}"#,
            Problem::BadTokenEndpoint("URL must not contain userinfo (user:password@)".into()),
        ),
        (
            "m15_relative_endpoint",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"/t1/token"}"#,
            Problem::BadTokenEndpoint("URL must be absolute (https://host/path)".into()),
        ),
        (
            "m16_javascript_endpoint",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"javascript:alert(1)"}"#,
            Problem::BadTokenEndpoint("URL must be absolute (https://host/path)".into()),
        ),
        (
            "m17_methods_string",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://login.example.com/t1/token","token_endpoint_auth_methods_supported":"private_key_jwt"}"#,
            Problem::BadList("token_endpoint_auth_methods_supported"),
        ),
        (
            "m18_methods_nested",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://login.example.com/t1/token","token_endpoint_auth_methods_supported":[["private_key_jwt"]]}"#,
            Problem::BadList("token_endpoint_auth_methods_supported"),
        ),
        (
            "m19_algs_null_item",
            r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://login.example.com/t1/token","token_endpoint_auth_signing_alg_values_supported":["ES256",null]}"#,
            Problem::BadList("token_endpoint_auth_signing_alg_values_supported"),
        ),
    ];
    for (name, body, problem) in cases {
        assert_eq!(doc_problem(body).as_ref(), Err(problem), "{name}");
    }
    // An empty body, an empty object, deep nesting (serde_json's recursion limit) and a
    // document past the size bound.
    assert_eq!(doc_problem(""), Err(Problem::NotAnObject));
    assert_eq!(doc_problem("{}"), Err(Problem::NoIssuer));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(doc_problem(&deep), Err(Problem::NotAnObject));
    let huge = format!(r#"{{"issuer":"{ISSUER}","pad":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(doc_problem(&huge), Err(Problem::TooLarge));
    // Duplicate keys: the JSON reader keeps the last, and the last must still match.
    let dup = r#"{"issuer":"https://login.example.com/t1","issuer":"https://evil.example/t1","token_endpoint":"https://a.example/t"}"#;
    assert_eq!(doc_problem(dup), Err(mismatch("https://evil.example/t1")));
}

#[test]
fn m_catalog_a_lenient_but_valid_document_is_used() {
    // Unknown members, null lists (treated as absent would be lenient: they are not
    // arrays, so refused), and RFC 8414's default method when the list is absent.
    let m = doc_problem(
        r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://login.example.com/t1/oauth2/token?api-version=2","jwks_uri":"https://login.example.com/keys","x-vendor":{"a":[1,2,{"b":null}]}}"#,
    )
    .unwrap();
    assert_eq!(
        m.token_endpoint,
        "https://login.example.com/t1/oauth2/token?api-version=2"
    );
    assert_eq!(m.auth_methods, ["client_secret_basic"]);
    let null_list = r#"{"issuer":"https://login.example.com/t1","token_endpoint":"https://a.example/t","token_endpoint_auth_methods_supported":null}"#;
    assert_eq!(
        doc_problem(null_list),
        Err(Problem::BadList("token_endpoint_auth_methods_supported"))
    );
}
