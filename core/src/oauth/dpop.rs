//! DPoP proofs (RFC 9449): the signed JWT a client sends in a `DPoP` header with a
//! token request or with a request that uses a DPoP-bound token. Pure: the clock
//! reading, the `jti` bytes and the key are passed in.
//!
//! Here: the public key as a JWK and its thumbprint (RFC 7638, the `jkt` a server
//! binds the token to), `htu` (the target URI without query and fragment), `ath` (the
//! token's hash), what a `DPoP-Nonce` header may hold, and the proof itself.

use super::client_auth::PrivateKey;
use base64ct::{Base64UrlUnpadded as B64, Encoding as _};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `typ` of a DPoP proof (RFC 9449 §4.2).
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The longest `DPoP-Nonce` kept or sent. RFC 9449 sets no limit; servers send tens
/// of characters (oidc-provider 43), and a value is sent back in every proof.
pub const MAX_NONCE_LEN: usize = 512;

/// What one proof says besides the key (RFC 9449 §4.2). Its `Debug` shows the method,
/// `htu` and time, not the access token or the nonce.
#[derive(Clone, Copy)]
pub struct ProofClaims<'a> {
    /// `htm`: the request's method.
    pub method: &'a str,
    /// The request's URL; `htu` is it without query and fragment ([`htu`]).
    pub url: &'a str,
    /// `iat`, Unix seconds.
    pub now_secs: u64,
    /// Random bytes for `jti`, fresh for every proof.
    pub jti: [u8; 16],
    /// `nonce`: the last `DPoP-Nonce` the server sent, if any.
    pub nonce: Option<&'a str>,
    /// The access token the request carries, for `ath`; `None` for a token request.
    pub access_token: Option<&'a str>,
}

impl std::fmt::Debug for ProofClaims<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProofClaims({} {} at {}{}{})",
            self.method,
            htu(self.url),
            self.now_secs,
            if self.nonce.is_some() { ", nonce" } else { "" },
            if self.access_token.is_some() {
                ", ath"
            } else {
                ""
            },
        )
    }
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'a str,
    alg: &'a str,
    jwk: Jwk<'a>,
}

/// A JWK of the members RFC 7638 names, serialised in its order.
struct Jwk<'a>(&'a [(&'static str, String)]);

impl Serialize for Jwk<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

/// The JWK SHA-256 thumbprint (RFC 7638 §3) of `key`'s public key: base64url of the
/// SHA-256 of its required members as JSON, in lexicographic order, no whitespace.
/// A token bound to the key carries it as `cnf.jkt` (RFC 9449 §6).
pub fn thumbprint(key: &PrivateKey) -> String {
    thumbprint_of(&key.public_jwk())
}

fn thumbprint_of(members: &[(&'static str, String)]) -> String {
    let json = serde_json::to_vec(&Jwk(members)).unwrap_or_default();
    B64::encode_string(&Sha256::digest(&json))
}

/// `htu`: `url` without its query and fragment (RFC 9449 §4.2).
pub fn htu(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// `ath`: base64url of the SHA-256 of the access token (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    B64::encode_string(&Sha256::digest(access_token.as_bytes()))
}

/// Whether `value` may be kept and sent back as a nonce: RFC 9449 §8.1's
/// `1*NQCHAR` (printable ASCII without space, `"` and `\`), at most
/// [`MAX_NONCE_LEN`] bytes. A header that is anything else is ignored.
pub fn valid_nonce(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_NONCE_LEN
        && value
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The JOSE header of every proof `key` signs (`typ`, `alg` and the public key as a
/// JWK whose members are `members`), base64url-encoded as the JWS carries it.
fn encoded_header(key: &PrivateKey, members: &[(&'static str, String)]) -> String {
    let header = Header {
        typ: PROOF_TYPE,
        alg: key.alg().as_str(),
        jwk: Jwk(members),
    };
    B64::encode_string(&serde_json::to_vec(&header).unwrap_or_default())
}

/// A P-256 key this component made, with the scalar it was made from (to be sealed
/// in the store). The scalar is wiped when this is dropped; `Debug` shows neither.
pub struct GeneratedKey {
    /// The key, to sign proofs with.
    pub key: PrivateKey,
    scalar: zeroize::Zeroizing<[u8; 32]>,
}

impl GeneratedKey {
    /// The 32-byte scalar ([`PrivateKey::from_p256_scalar`] makes the key again).
    pub fn scalar(&self) -> &[u8; 32] {
        &self.scalar
    }
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneratedKey({})", self.key.alg().as_str())
    }
}

/// A new P-256 key from 32 random bytes at a time (`random`), for a client that has
/// none configured. A draw that is not a valid scalar (zero, or not below the group
/// order: odds about 2^-32) is wiped and drawn again, at most 8 times.
pub fn generate_p256(random: &dyn Fn(&mut [u8])) -> Option<GeneratedKey> {
    for _ in 0..8 {
        let mut scalar = zeroize::Zeroizing::new([0u8; 32]);
        random(&mut scalar[..]);
        if let Some(key) = PrivateKey::from_p256_scalar(&scalar[..]) {
            return Some(GeneratedKey { key, scalar });
        }
    }
    None
}

/// The key tokens are bound to, as this instance holds it: shared by every token and
/// proof that uses it, with its thumbprint worked out once. Two are equal when their
/// thumbprints are; `Debug` shows the thumbprint only.
#[derive(Clone)]
pub struct DpopKey {
    key: std::sync::Arc<PrivateKey>,
    jkt: String,
    /// The proofs' header, encoded once: it is the same for every proof.
    header: std::sync::Arc<str>,
}

impl DpopKey {
    /// `key`, with its thumbprint and its proofs' header.
    pub fn new(key: PrivateKey) -> Self {
        let members = key.public_jwk();
        DpopKey {
            jkt: thumbprint_of(&members),
            header: encoded_header(&key, &members).into(),
            key: std::sync::Arc::new(key),
        }
    }

    /// The key's JWK thumbprint (RFC 7638): the `jkt` a server binds a token to.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request, signed with this key (`random` gives the RSA signers
    /// their bytes). A nonce that [`valid_nonce`] refuses is left out.
    pub fn proof(&self, claims: &ProofClaims<'_>, random: &dyn Fn(&mut [u8])) -> String {
        let jti = B64::encode_string(&claims.jti);
        let payload = Payload {
            jti: &jti,
            htm: claims.method,
            htu: htu(claims.url),
            iat: claims.now_secs,
            nonce: claims.nonce.filter(|n| valid_nonce(n)),
            ath: claims.access_token.map(ath),
        };
        let payload = B64::encode_string(&serde_json::to_vec(&payload).unwrap_or_default());
        self.key
            .sign_jws(format!("{}.{payload}", self.header), random)
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.jkt == other.jkt
    }
}

impl Eq for DpopKey {}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey({} {})", self.key.alg().as_str(), self.jkt)
    }
}

/// `dpop = on`: where the key comes from, and whether a Bearer answer is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// `dpop_private_key`; `None`: a P-256 key is generated per cache key and sealed
    /// in the store beside its token.
    pub configured: Option<DpopKey>,
    /// `dpop_require_binding`: a `Bearer` answer to a DPoP token request fails (the
    /// server ignored the proof).
    pub require_binding: bool,
}

impl DpopSettings {
    /// What the cache key says of the key: its thumbprint, or that it is generated
    /// (rotating `dpop_private_key` makes a new cache key).
    pub(crate) fn cache_part(&self) -> String {
        match &self.configured {
            Some(k) => format!("dpop:{}", k.jkt),
            None => "dpop:generated".to_string(),
        }
    }
}

/// The `token_type` of a token (RFC 6749 §7.1, RFC 9449 §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenType {
    /// Sent as `Authorization: Bearer <token>`.
    #[default]
    Bearer,
    /// Bound to a DPoP key: sent as `Authorization: DPoP <token>` with a proof.
    DPoP,
}

impl TokenType {
    /// As the `Authorization` scheme and `token_type` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::DPoP => "DPoP",
        }
    }
}

/// The `DPoP-Nonce` header of a response, if it holds a nonce that may be sent back
/// ([`valid_nonce`]); a header that is anything else is ignored.
pub fn response_nonce(resp: &crate::http_types::HttpResponse) -> Option<&str> {
    resp.header("dpop-nonce").filter(|n| valid_nonce(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proof with `key`, as a `DpopKey` of it signs one.
    fn proof(key: &PrivateKey, claims: &ProofClaims<'_>, random: &dyn Fn(&mut [u8])) -> String {
        DpopKey::new(key.clone()).proof(claims, random)
    }
    use crate::oauth::client_auth::Alg;
    use base64::Engine as _;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn key() -> PrivateKey {
        PrivateKey::from_p256_scalar(&[0x42; 32]).unwrap()
    }

    fn claims(access_token: Option<&str>) -> ProofClaims<'_> {
        ProofClaims {
            method: "GET",
            url: "https://api.example/v1/things?page=2#top",
            now_secs: 1_800_000_000,
            jti: [7; 16],
            nonce: Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"),
            access_token,
        }
    }

    /// The proof's header and payload as JSON, read with an independent base64.
    fn parts(proof: &str) -> (serde_json::Value, serde_json::Value) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut it = proof.split('.');
        let mut next = || -> serde_json::Value {
            serde_json::from_slice(&b64.decode(it.next().unwrap()).unwrap()).unwrap()
        };
        (next(), next())
    }

    #[test]
    fn the_thumbprint_of_rfc_9449s_example_key_is_its_jkt() {
        // RFC 9449 §6.1: the example proof's key and the `jkt` of the token bound to it.
        let members = [
            ("crv", "P-256".to_string()),
            ("kty", "EC".into()),
            ("x", "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs".into()),
            ("y", "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA".into()),
        ];
        assert_eq!(
            thumbprint_of(&members),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn ath_is_rfc_9449s_example() {
        // RFC 9449 §7.1: the example access token and its `ath`.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn a_proof_verifies_with_the_key_in_its_header_and_says_what_the_request_is() {
        let key = key();
        let proof = proof(&key, &claims(Some("the-token")), &|_| {});
        let (header, payload) = parts(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        let jwk = &header["jwk"];
        assert_eq!(jwk.as_object().unwrap().len(), 4, "only the public members");
        assert_eq!((&jwk["kty"], &jwk["crv"]), (&"EC".into(), &"P-256".into()));
        // The signature, checked by jsonwebtoken against the header's own key.
        let decoding =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&proof, &decoding, &validation).unwrap();
        assert_eq!(payload["htm"], "GET");
        assert_eq!(payload["htu"], "https://api.example/v1/things");
        assert_eq!(payload["iat"], 1_800_000_000u64);
        assert_eq!(payload["jti"], B64::encode_string(&[7; 16]));
        assert_eq!(payload["nonce"], "eyJ7S_zG.eyJH0-Z.HX4w-7v");
        assert_eq!(payload["ath"], ath("the-token"));
        // The header's key is the thumbprint's.
        let by_hand = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(thumbprint(&key), thumbprint_by_hand(by_hand));
    }

    #[test]
    fn a_token_request_proof_has_no_ath_and_a_bad_nonce_is_left_out() {
        let mut c = claims(None);
        c.nonce = Some("has space");
        let (_, payload) = parts(&proof(&key(), &c, &|_| {}));
        assert!(payload.get("ath").is_none(), "{payload}");
        assert!(payload.get("nonce").is_none(), "{payload}");
        // Every proof its own jti.
        let mut other = claims(None);
        other.jti = [8; 16];
        assert_ne!(proof(&key(), &c, &|_| {}), proof(&key(), &other, &|_| {}));
    }

    #[test]
    fn htu_is_the_url_without_query_and_fragment() {
        for (url, want) in [
            ("https://as.example/token", "https://as.example/token"),
            ("https://as.example/token?a=b", "https://as.example/token"),
            ("https://as.example/t#frag", "https://as.example/t"),
            ("https://as.example/t#f?g", "https://as.example/t"),
            (
                "https://as.example:8443/a/b/?",
                "https://as.example:8443/a/b/",
            ),
        ] {
            assert_eq!(htu(url), want, "{url}");
        }
    }

    #[test]
    fn a_nonce_is_printable_ascii_without_space_quote_or_backslash_and_not_too_long() {
        for good in [
            "a",
            "eyJ7S_zG.eyJH0-Z.HX4w-7v",
            "!#[]~",
            &"n".repeat(MAX_NONCE_LEN),
        ] {
            assert!(valid_nonce(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a\"b",
            "a\\b",
            "a\r\nSet-Cookie: x",
            "a\tb",
            "caf\u{e9}",
            "a\u{7f}",
            &"n".repeat(MAX_NONCE_LEN + 1),
        ] {
            assert!(!valid_nonce(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_generated_key_is_a_p256_key_from_the_random_bytes() {
        let generated = generate_p256(&|b| b.fill(0x11)).unwrap();
        assert_eq!(generated.key.alg(), Alg::Es256);
        assert_eq!(generated.scalar(), &[0x11; 32]);
        // The same bytes, the same key; other than 32 bytes, no key (not a padded one).
        let again = PrivateKey::from_p256_scalar(generated.scalar()).unwrap();
        assert_eq!(thumbprint(&generated.key), thumbprint(&again));
        assert!(PrivateKey::from_p256_scalar(&[0x11; 31]).is_none());
        assert!(PrivateKey::from_p256_scalar(&[0x11; 33]).is_none());
        // Bytes that are never a scalar (zero; all ones is above the order): no key.
        assert!(generate_p256(&|b| b.fill(0)).is_none());
        assert!(generate_p256(&|b| b.fill(0xff)).is_none());
        // A bad draw is drawn again.
        let draws = std::cell::Cell::new(0);
        let generated = generate_p256(&|b| {
            draws.set(draws.get() + 1);
            b.fill(if draws.get() == 1 { 0xff } else { 0x22 });
        })
        .unwrap();
        assert_eq!((draws.get(), generated.scalar()), (2, &[0x22; 32]));
    }

    #[cfg(feature = "rsa")]
    #[test]
    fn an_rsa_proof_carries_n_and_e_and_verifies_with_them() {
        let pem = include_str!("../../../tests/fixtures/rsa-2048.pem");
        let key = PrivateKey::from_pem(pem, Some(Alg::Ps256)).unwrap();
        let proof = proof(&key, &claims(None), &|b| b.fill(9));
        let (header, _) = parts(&proof);
        let jwk = &header["jwk"];
        assert_eq!(
            (&header["alg"], &jwk["kty"], &jwk["e"]),
            (&"PS256".into(), &"RSA".into(), &"AQAB".into())
        );
        let decoding = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::PS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&proof, &decoding, &validation).unwrap();
        // n without a leading zero byte: 2048 bits are 256 bytes, 342 base64url characters.
        assert_eq!(jwk["n"].as_str().unwrap().len(), 342);
        let by_hand = format!(
            r#"{{"e":"AQAB","kty":"RSA","n":"{}"}}"#,
            jwk["n"].as_str().unwrap()
        );
        assert_eq!(thumbprint(&key), thumbprint_by_hand(by_hand));
    }

    #[cfg(feature = "eddsa")]
    #[test]
    fn an_eddsa_proof_carries_the_okp_key_and_verifies_with_it() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let key = PrivateKey::from_pem(&pair.serialize_pem(), None).unwrap();
        let proof = proof(&key, &claims(None), &|_| {});
        let (header, _) = parts(&proof);
        let jwk = &header["jwk"];
        assert_eq!(
            (&header["alg"], &jwk["kty"], &jwk["crv"]),
            (&"EdDSA".into(), &"OKP".into(), &"Ed25519".into())
        );
        let x = jwk["x"].as_str().unwrap();
        let by_hand = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        assert_eq!(thumbprint(&key), thumbprint_by_hand(by_hand));
        let decoding = DecodingKey::from_ed_components(x).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&proof, &decoding, &validation).unwrap();
    }

    #[test]
    fn debug_shows_no_key_token_or_nonce() {
        let generated = generate_p256(&|b| b.fill(0x33)).unwrap();
        assert_eq!(format!("{generated:?}"), "GeneratedKey(ES256)");
        assert_eq!(format!("{:?}", generated.key), "PrivateKey(ES256)");
        let shown = format!("{:?}", claims(Some("the-secret-token")));
        assert_eq!(
            shown,
            "ProofClaims(GET https://api.example/v1/things at 1800000000, nonce, ath)"
        );
    }

    /// RFC 7638's member order, written out: `thumbprint` must hash exactly this JSON.
    fn thumbprint_by_hand(json: String) -> String {
        B64::encode_string(&Sha256::digest(json.as_bytes()))
    }
}
