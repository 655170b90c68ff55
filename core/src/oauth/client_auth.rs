//! Client authentication by a signed assertion (RFC 7523 §2.2, OpenID Connect Core §9):
//! the JWT a client sends as `client_assertion` instead of its secret. Pure: the clock
//! reading and the `jti` bytes are passed in, so a test can pin them, and every token
//! request (every attempt) gets its own.
//!
//! Built so far: `client_secret_jwt` (HS256, keyed by the client secret),
//! `private_key_jwt` with ES256 (a P-256 key, RustCrypto's `p256`, deterministic
//! signatures per RFC 6979), and a federated assertion sent as it is
//! ([`FederatedAssertion`], whose `exp` is checked). The claims and the encoding are
//! shared.

use base64ct::{Base64UrlUnpadded as B64, Encoding as _};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// `client_assertion_type` for a JWT assertion (RFC 7523 §2.2).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What one assertion says.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    /// `iss` and `sub`: the client id.
    pub client_id: &'a str,
    /// `aud`: the token endpoint URL.
    pub audience: &'a str,
    /// `iat`, Unix seconds.
    pub now_secs: u64,
    /// `exp` is `iat` + this.
    pub lifetime_secs: u64,
    /// Random bytes for `jti`.
    pub jti: [u8; 16],
    /// The `typ` header: `JWT`, or `client-authentication+jwt` (the RFC 7523 update).
    pub typ: &'a str,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    x5t_s256: Option<&'a str>,
}

/// How a signed assertion's header names its key: `kid` (`client_key_id`), and
/// `x5t#S256`, the SHA-256 thumbprint of the key's certificate (`client_certificate`,
/// RFC 7515 §4.1.8), as Microsoft Entra ID finds a certificate credential by.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyIds<'a> {
    /// `kid`; `None`: no `kid`.
    pub kid: Option<&'a str>,
    /// `x5t#S256`; `None`: none.
    pub x5t_s256: Option<&'a str>,
}

impl<'a> KeyIds<'a> {
    /// Only a `kid` (or nothing).
    pub fn kid(kid: Option<&'a str>) -> Self {
        KeyIds {
            kid,
            x5t_s256: None,
        }
    }
}

/// A signed assertion's payload: a client assertion's (`sub` the client id, no
/// `scope`), or a JWT-bearer grant's.
#[derive(Serialize)]
struct Payload<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    aud: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

/// `base64url(header) "." base64url(payload)`: what is signed, with `sub` and
/// `scope` as given (a client assertion's `sub` is its client id).
fn signing_input(
    alg: &str,
    ids: KeyIds<'_>,
    c: &Claims<'_>,
    sub: Option<&str>,
    scope: &str,
) -> String {
    let header = Header {
        alg,
        typ: c.typ,
        kid: ids.kid,
        x5t_s256: ids.x5t_s256,
    };
    let jti = B64::encode_string(&c.jti);
    let payload = Payload {
        iss: c.client_id,
        sub,
        aud: c.audience,
        scope,
        jti: &jti,
        iat: c.now_secs,
        exp: c.now_secs.saturating_add(c.lifetime_secs),
    };
    jws_input(&header, &payload)
}

/// `base64url(JSON header) "." base64url(JSON payload)`: what a JWS signs (RFC 7515
/// §7.1). DPoP's proofs (`oauth::dpop`) encode their header once per key.
fn jws_input(header: &impl Serialize, payload: &impl Serialize) -> String {
    format!(
        "{}.{}",
        B64::encode_string(&json(header)),
        B64::encode_string(&json(payload))
    )
}

/// Structs of strings and numbers: serialising them cannot fail.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// `client_secret_jwt`: the assertion signed with HMAC-SHA256 keyed by the secret.
pub fn client_secret_jwt(claims: &Claims<'_>, secret: &[u8]) -> String {
    let input = signing_input(
        "HS256",
        KeyIds::default(),
        claims,
        Some(claims.client_id),
        "",
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    let signature = mac.finalize().into_bytes();
    format!("{input}.{}", B64::encode_string(&signature))
}

/// The JWS algorithm of a `private_key_jwt` assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 SHA-256 (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 SHA-256 (RFC 7518 §3.3).
    Rs256,
    /// RSASSA-PSS SHA-256, MGF1 SHA-256, 32-byte salt (RFC 7518 §3.5).
    Ps256,
    /// Ed25519 (RFC 8037 §3.1).
    EdDsa,
}

impl Alg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// Smallest RSA key accepted (RFC 7518 §3.3: 2048 bits or larger).
#[cfg(feature = "rsa")]
const MIN_RSA_BITS: u32 = 2048;

#[derive(Clone)]
enum Key {
    Es256(Box<P256Key>),
    #[cfg(feature = "eddsa")]
    EdDsa(Box<ed25519_dalek::SigningKey>),
    #[cfg(feature = "rsa")]
    Rs256(Box<rsa::PrivateKey>),
    #[cfg(feature = "rsa")]
    Ps256(Box<rsa::PrivateKey>),
}

/// A P-256 key: the secret (wiped on drop) and its public key, derived once.
#[derive(Clone)]
struct P256Key {
    secret: p256::SecretKey,
    public: p256::PublicKey,
}

impl P256Key {
    /// `secret` with its public key derived (a scalar multiplication).
    fn derived(secret: p256::SecretKey) -> Option<Self> {
        let public = token_provider_es256::public_key(&secret.to_nonzero_scalar())?;
        Some(P256Key { secret, public })
    }

    /// The ES256 signature `r || s` of `input`: RFC 6979's deterministic nonce over its
    /// SHA-256, as `p256`'s `SigningKey` signs (the same bytes: tested), with `k·G` as
    /// `token_provider_es256` decides for this instance.
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        let z = sha2::Sha256::digest(input);
        token_provider_es256::sign(&self.secret.to_nonzero_scalar(), &z.into()).to_vec()
    }
}

/// A client's private key for `private_key_jwt`, read once per instance. Its `Debug`
/// shows only the algorithm.
#[derive(Clone)]
pub struct PrivateKey(Key);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.alg().as_str())
    }
}

impl PrivateKey {
    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`): P-256 (ES256) or RSA
    /// (RS256, or PS256 when `alg` says so). The error says what is wrong without
    /// echoing any of the key.
    pub fn from_pem(pem: &str, alg: Option<Alg>) -> Result<Self, String> {
        let der = pkcs8_der(pem).ok_or(
            "expected a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----); convert others with `openssl pkcs8 -topk8 -nocrypt`",
        )?;
        if let Some((secret, public)) = super::p256_pkcs8::key_pair(&der) {
            let key = Box::new(P256Key { secret, public });
            return match alg {
                None | Some(Alg::Es256) => Ok(PrivateKey(Key::Es256(key))),
                Some(other) => Err(format!("a P-256 key signs ES256, not {}", other.as_str())),
            };
        }
        #[cfg(feature = "eddsa")]
        if let Ok(key) =
            <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(
                &der,
            )
        {
            return match alg {
                None | Some(Alg::EdDsa) => Ok(PrivateKey(Key::EdDsa(Box::new(key)))),
                Some(other) => Err(format!(
                    "an Ed25519 key signs EdDSA, not {}",
                    other.as_str()
                )),
            };
        }
        rsa_key(&der, alg)
    }

    /// A P-256 key from its 32-byte scalar (a key this component made: DPoP's,
    /// `oauth::dpop`), or `None` when the bytes are not 32 or not a valid scalar (a
    /// shorter slice is refused, not padded into another key).
    pub(crate) fn from_p256_scalar(scalar: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = scalar.try_into().ok()?;
        let secret = p256::SecretKey::from_bytes(&(*bytes).into()).ok()?;
        Some(PrivateKey(Key::Es256(Box::new(P256Key::derived(secret)?))))
    }

    /// A P-256 key from its scalar and its public key as [`PrivateKey::p256_public`]
    /// gave it (a key this component made and sealed with both), without deriving the
    /// public key again. `None` when either is not one; that the two belong together
    /// is what the sealed record vouches for.
    pub(crate) fn from_p256_parts(scalar: &[u8], public: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = scalar.try_into().ok()?;
        let secret = p256::SecretKey::from_bytes(&(*bytes).into()).ok()?;
        // Uncompressed only (`0x04 || x || y`), read as coordinates: a point on the
        // curve, without the decompression code a SEC1 reader brings (6.6 KB).
        use p256::elliptic_curve::point::AffineCoordinates as _;
        let (&[4], xy) = public.split_at_checked(1)? else {
            return None;
        };
        let (x, y) = xy.split_at_checked(32).filter(|(_, y)| y.len() == 32)?;
        let point = p256::AffinePoint::from_coordinates(
            &p256::FieldBytes::try_from(x).ok()?,
            &p256::FieldBytes::try_from(y).ok()?,
        );
        let public = p256::PublicKey::from_affine(Option::from(point)?).ok()?;
        Some(PrivateKey(Key::Es256(Box::new(P256Key { secret, public }))))
    }

    /// A P-256 key's public key, SEC1 uncompressed (65 bytes); `None` for other keys.
    pub(crate) fn p256_public(&self) -> Option<Vec<u8>> {
        use p256::elliptic_curve::sec1::ToSec1Point;
        match &self.0 {
            Key::Es256(key) => Some(key.public.to_sec1_point(false).as_bytes().to_vec()),
            #[cfg(any(feature = "eddsa", feature = "rsa"))]
            _ => None,
        }
    }

    /// The public key's JWK members that RFC 7638 hashes, in its order (`crv`, `kty`,
    /// `x`, `y` for EC; `e`, `kty`, `n` for RSA; `crv`, `kty`, `x` for OKP), each value
    /// a string.
    pub(crate) fn public_jwk(&self) -> Vec<(&'static str, String)> {
        match &self.0 {
            Key::Es256(key) => {
                use p256::elliptic_curve::sec1::ToSec1Point;
                let point = key.public.to_sec1_point(false);
                let xy = &point.as_bytes()[1..];
                vec![
                    ("crv", "P-256".into()),
                    ("kty", "EC".into()),
                    ("x", B64::encode_string(&xy[..32])),
                    ("y", B64::encode_string(&xy[32..])),
                ]
            }
            #[cfg(feature = "eddsa")]
            Key::EdDsa(key) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", B64::encode_string(key.verifying_key().as_bytes())),
            ],
            #[cfg(feature = "rsa")]
            Key::Rs256(key) | Key::Ps256(key) => {
                use rsa::traits::PublicKeyParts;
                let minimal = |n: &rsa::BoxedUint| {
                    let bytes = n.to_be_bytes();
                    let zeros = bytes.iter().take_while(|b| **b == 0).count();
                    B64::encode_string(&bytes[zeros..])
                };
                vec![
                    ("e", minimal(key.e())),
                    ("kty", "RSA".into()),
                    ("n", minimal(key.n().as_ref())),
                ]
            }
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> Alg {
        match self.0 {
            Key::Es256(_) => Alg::Es256,
            #[cfg(feature = "eddsa")]
            Key::EdDsa(_) => Alg::EdDsa,
            #[cfg(feature = "rsa")]
            Key::Rs256(_) => Alg::Rs256,
            #[cfg(feature = "rsa")]
            Key::Ps256(_) => Alg::Ps256,
        }
    }

    /// The compact JWS of `input` ([`jws_input`]): it, `.`, and its signature in
    /// base64url.
    pub(crate) fn sign_jws(&self, input: String, random: &dyn Fn(&mut [u8])) -> String {
        let signature = self.sign(input.as_bytes(), random);
        format!("{input}.{}", B64::encode_string(&signature))
    }

    /// The JWS signature of `input` (RFC 7518 §3): `r || s` for ES256, the RSA
    /// signature for RS256/PS256 (blinded, and PS256's salt, with `random`'s bytes).
    fn sign(&self, input: &[u8], random: &dyn Fn(&mut [u8])) -> Vec<u8> {
        #[cfg(not(feature = "rsa"))]
        let _ = random;
        match &self.0 {
            Key::Es256(key) => key.sign(input),
            #[cfg(feature = "eddsa")]
            Key::EdDsa(key) => ed25519_dalek::Signer::sign(key.as_ref(), input)
                .to_bytes()
                .to_vec(),
            #[cfg(feature = "rsa")]
            Key::Rs256(key) => {
                rsa_sign(key, rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), input, random)
            }
            #[cfg(feature = "rsa")]
            Key::Ps256(key) => rsa_sign(key, rsa::Pss::<sha2::Sha256>::new(), input, random),
        }
    }
}

/// RS256/PS256: `padding` over the SHA-256 of `input`, blinded with `random`'s bytes
/// (the padding scheme straight on the key: the `signature` traits' signers box and
/// format every error of the key stack, kilobytes of code in the component).
#[cfg(feature = "rsa")]
fn rsa_sign(
    key: &rsa::PrivateKey,
    padding: impl rsa::traits::SignatureScheme,
    input: &[u8],
    random: &dyn Fn(&mut [u8]),
) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(input);
    match key.sign_with_rng(&mut Random(random), padding, &digest) {
        Ok(signature) => signature,
        // Only a digest too long for the modulus fails, and a 32-byte one never is for
        // a key of at least MIN_RSA_BITS; as the signers did, this is a bug if reached.
        Err(_) => panic!("RSA signing with a checked key failed"),
    }
}

/// An RSA key in PKCS#8 DER, for RS256 (or PS256 when `alg` says so).
#[cfg(feature = "rsa")]
fn rsa_key(der: &[u8], alg: Option<Alg>) -> Result<PrivateKey, String> {
    let key = <rsa::PrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
        .map_err(|_| not_a_key())?;
    // The modulus's own length (its storage size, `n_bits_precision`, rounds up).
    let bits = rsa::traits::PublicKeyParts::n(&key).as_ref().bit_width();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required (RFC 7518 §3.3)"
        ));
    }
    match alg {
        None | Some(Alg::Rs256) => Ok(PrivateKey(Key::Rs256(Box::new(key)))),
        Some(Alg::Ps256) => Ok(PrivateKey(Key::Ps256(Box::new(key)))),
        Some(other) => Err(format!(
            "an RSA key signs RS256 or PS256, not {}",
            other.as_str()
        )),
    }
}

#[cfg(not(feature = "rsa"))]
fn rsa_key(der: &[u8], _alg: Option<Alg>) -> Result<PrivateKey, String> {
    let _ = der;
    Err(not_a_key())
}

/// What a key that is none of this build's kinds gets told.
fn not_a_key() -> String {
    format!(
        "not a P-256{}{} private key in PKCS#8 PEM{}",
        if cfg!(feature = "eddsa") {
            ", Ed25519"
        } else {
            ""
        },
        if cfg!(feature = "rsa") { " or RSA" } else { "" },
        match (cfg!(feature = "rsa"), cfg!(feature = "eddsa")) {
            (true, true) => "",
            (true, false) => " (Ed25519 keys need the component built with the `eddsa` feature)",
            (false, true) => {
                " (RSA keys need the component built with the `rsa` feature: token_provider_rsa.wasm)"
            }
            (false, false) => {
                " (RSA keys need the component built with the `rsa` feature: token_provider_rsa.wasm; Ed25519 keys the `eddsa` feature)"
            }
        }
    )
}

/// The host's random bytes as the RNG the RSA signers want.
#[cfg(feature = "rsa")]
struct Random<'a>(&'a dyn Fn(&mut [u8]));

#[cfg(feature = "rsa")]
impl rsa::rand_core::TryRng for Random<'_> {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        (self.0)(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        (self.0)(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        (self.0)(dst);
        Ok(())
    }
}

#[cfg(feature = "rsa")]
impl rsa::rand_core::TryCryptoRng for Random<'_> {}

/// The DER inside a `PRIVATE KEY` PEM block.
fn pkcs8_der(pem: &str) -> Option<Vec<u8>> {
    pem_der(
        pem,
        ["-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"],
    )
}

/// The DER inside the first PEM block between these label lines (RFC 7468: the label
/// lines around base64 lines), read with the base64 decoder the component already
/// has.
pub(crate) fn pem_der(pem: &str, [begin, end]: [&str; 2]) -> Option<Vec<u8>> {
    let body = pem.split_once(begin)?.1.split_once(end)?.0;
    let text: String = body.split_ascii_whitespace().collect();
    base64ct::Base64::decode_vec(&text).ok()
}

/// `private_key_jwt`: the assertion signed with the client's private key, with `kid`
/// and `x5t#S256` in the header when given; `random` gives the RSA signers their
/// random bytes.
pub fn private_key_jwt(
    claims: &Claims<'_>,
    key: &PrivateKey,
    ids: KeyIds<'_>,
    random: &dyn Fn(&mut [u8]),
) -> String {
    let alg = key.alg().as_str();
    key.sign_jws(
        signing_input(alg, ids, claims, Some(claims.client_id), ""),
        random,
    )
}

/// What a `grant = jwt_bearer` assertion says (RFC 7523 §2.1, §3): `iss` the client
/// id (a Google service account's `client_email`), `sub` the subject it acts for if
/// any, `aud`, `iat`, `exp`, `jti`, and the scopes asked for in `scope`, as Google's
/// token endpoint reads them.
#[derive(Debug, Clone, Copy)]
pub struct GrantClaims<'a> {
    /// `iss`, `aud`, `iat`, `exp` and `jti` as a client assertion has them (`typ` is
    /// `JWT`).
    pub claims: Claims<'a>,
    /// `sub` (`jwt_bearer_subject`); `None`: no `sub`.
    pub subject: Option<&'a str>,
    /// `scope`, space-separated; empty: no `scope`.
    pub scope: &'a str,
}

/// The `assertion` of a `grant = jwt_bearer` token request, signed with `key`, with
/// `typ` `JWT` and `kid` and `x5t#S256` in the header when given.
pub fn jwt_bearer_assertion(
    g: &GrantClaims<'_>,
    key: &PrivateKey,
    ids: KeyIds<'_>,
    random: &dyn Fn(&mut [u8]),
) -> String {
    let claims = Claims {
        typ: "JWT",
        ..g.claims
    };
    let input = signing_input(key.alg().as_str(), ids, &claims, g.subject, g.scope);
    key.sign_jws(input, random)
}

/// A federated client assertion (RFC 7523 §2.2 with a JWT another party issued: a
/// projected Kubernetes service-account token, a SPIFFE JWT-SVID): sent as it is. Only
/// its `exp` is read, so an expired one fails with a clear error before it is sent.
#[derive(Clone)]
pub struct FederatedAssertion {
    jwt: crate::secret::Secret,
    /// `exp`, Unix seconds.
    pub expires_at_secs: u64,
    /// `iss` and `sub` as a JSON array (`null` for one that is absent or not a
    /// string): whom the token is about (a token exchange's cache key).
    pub(crate) issuer_and_subject: String,
}

impl std::fmt::Debug for FederatedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FederatedAssertion(exp {})", self.expires_at_secs)
    }
}

/// An assertion this close to its `exp` is not sent: it could expire on the way.
pub(crate) const FEDERATED_MARGIN_SECS: u64 = 5;

impl FederatedAssertion {
    /// A compact JWS whose payload has a numeric `exp`. The error echoes none of it.
    pub(crate) fn parse(jwt: &str) -> Result<Self, String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [_, payload, _] = parts[..] else {
            return Err("expected a JWT (three base64url parts separated by dots)".into());
        };
        let bytes = B64::decode_vec(payload.trim_end_matches('='))
            .map_err(|_| "the JWT payload is not base64url")?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| "the JWT payload is not a JSON object with a numeric exp claim")?;
        let claims = claims
            .as_object()
            .ok_or("the JWT payload is not a JSON object with a numeric exp claim")?;
        let exp = claims
            .get("exp")
            .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)))
            .ok_or("the JWT has no numeric exp claim")?;
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        Ok(FederatedAssertion {
            jwt: crate::secret::Secret::new(jwt),
            expires_at_secs: exp,
            issuer_and_subject: serde_json::to_string(&(text("iss"), text("sub")))
                .unwrap_or_default(),
        })
    }

    /// The assertion to send at `now_secs`, or why it cannot be.
    pub(crate) fn at(&self, now_secs: u64) -> Result<&str, String> {
        if now_secs.saturating_add(FEDERATED_MARGIN_SECS) >= self.expires_at_secs {
            return Err(format!(
                "expired at {} (Unix seconds; now {now_secs}): the platform must provide a fresh one, and an instance reads it when it starts",
                self.expires_at_secs
            ));
        }
        Ok(self.jwt.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn claims(jti: u8) -> Claims<'static> {
        Claims {
            client_id: "svc",
            audience: "https://auth.example.com/token",
            now_secs: 1_800_000_000,
            lifetime_secs: 60,
            jti: [jti; 16],
            typ: "JWT",
        }
    }

    #[derive(serde::Deserialize, Debug)]
    struct Seen {
        iss: String,
        sub: String,
        aud: String,
        jti: String,
        iat: u64,
        exp: u64,
    }

    /// Checked by an independent implementation (the `jsonwebtoken` crate), not by our
    /// own code read backwards.
    fn verify(token: &str, secret: &[u8]) -> (jsonwebtoken::Header, Seen) {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["https://auth.example.com/token"]);
        v.set_issuer(&["svc"]);
        v.validate_exp = false; // the pinned clock is not the test machine's
        v.required_spec_claims.clear();
        let data = decode::<Seen>(token, &DecodingKey::from_secret(secret), &v)
            .unwrap_or_else(|e| panic!("{token}: {e}"));
        (data.header, data.claims)
    }

    #[test]
    fn an_hs256_assertion_verifies_with_an_independent_verifier() {
        let token = client_secret_jwt(&claims(7), b"the client secret");
        let (header, seen) = verify(&token, b"the client secret");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!((seen.iss.as_str(), seen.sub.as_str()), ("svc", "svc"));
        assert_eq!(seen.aud, "https://auth.example.com/token");
        assert_eq!((seen.iat, seen.exp), (1_800_000_000, 1_800_000_060));
        assert_eq!(seen.jti, B64.encode([7u8; 16]));
    }

    #[test]
    fn another_key_or_a_changed_claim_does_not_verify() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let token = client_secret_jwt(&claims(7), b"the client secret");
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let wrong = decode::<Seen>(&token, &DecodingKey::from_secret(b"another"), &v);
        assert!(wrong.is_err());
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = client_secret_jwt(&claims(8), b"the client secret");
        let other_payload = other.split('.').nth(1).unwrap();
        parts[1] = other_payload;
        let spliced = parts.join(".");
        let key = DecodingKey::from_secret(b"the client secret");
        assert!(decode::<Seen>(&spliced, &key, &v).is_err());
    }

    #[test]
    fn the_typ_header_can_be_the_explicit_type() {
        let c = Claims {
            typ: "client-authentication+jwt",
            ..claims(1)
        };
        let (header, _) = verify(&client_secret_jwt(&c, b"k"), b"k");
        assert_eq!(header.typ.as_deref(), Some("client-authentication+jwt"));
    }

    fn no_random(out: &mut [u8]) {
        out.fill(0);
    }

    const NO_RANDOM: fn(&mut [u8]) = no_random;

    /// Random enough for a test (a xorshift sequence): RSA blinding and PSS salts.
    fn test_random() -> impl Fn(&mut [u8]) {
        let state = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15_u64);
        move |out: &mut [u8]| {
            for b in out {
                let mut x = state.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                state.set(x);
                *b = x as u8;
            }
        }
    }

    const RSA_2048: &str = include_str!("../../../tests/fixtures/rsa-2048.pem");
    const RSA_2048_PUBLIC: &str = include_str!("../../../tests/fixtures/rsa-2048.pub.pem");
    const RSA_1024: &str = include_str!("../../../tests/fixtures/rsa-1024.pem");

    #[cfg(feature = "rsa")]
    #[test]
    fn rs256_and_ps256_assertions_verify_with_an_independent_verifier() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let public = DecodingKey::from_rsa_pem(RSA_2048_PUBLIC.as_bytes()).unwrap();
        let random = test_random();
        for (alg, expected) in [
            (None, Algorithm::RS256),
            (Some(Alg::Rs256), Algorithm::RS256),
            (Some(Alg::Ps256), Algorithm::PS256),
        ] {
            let key = PrivateKey::from_pem(RSA_2048, alg).unwrap();
            assert_eq!(format!("{key:?}"), format!("PrivateKey({expected:?})"));
            let token = private_key_jwt(&claims(5), &key, KeyIds::kid(Some("rsa-1")), &random);
            let mut v = Validation::new(expected);
            v.set_audience(&["https://auth.example.com/token"]);
            v.set_issuer(&["svc"]);
            v.validate_exp = false;
            let data =
                decode::<Seen>(&token, &public, &v).unwrap_or_else(|e| panic!("{expected:?}: {e}"));
            assert_eq!(data.header.alg, expected);
            assert_eq!(data.header.kid.as_deref(), Some("rsa-1"));
            assert_eq!(data.claims.jti, B64.encode([5u8; 16]));
            // A spliced payload does not verify.
            let other = private_key_jwt(&claims(6), &key, KeyIds::kid(Some("rsa-1")), &random);
            let mut parts: Vec<&str> = token.split('.').collect();
            parts[1] = other.split('.').nth(1).unwrap();
            assert!(decode::<Seen>(&parts.join("."), &public, &v).is_err());
        }
        // PS256 is randomised (its salt): two signatures of one input differ.
        let pss = PrivateKey::from_pem(RSA_2048, Some(Alg::Ps256)).unwrap();
        assert_ne!(
            private_key_jwt(&claims(1), &pss, KeyIds::kid(None), &random),
            private_key_jwt(&claims(1), &pss, KeyIds::kid(None), &random)
        );
    }

    #[cfg(feature = "rsa")]
    #[test]
    fn a_key_and_an_algorithm_that_do_not_go_together_are_refused() {
        let e = PrivateKey::from_pem(RSA_1024, None).unwrap_err();
        assert_eq!(
            e,
            "an RSA key of 1024 bits; at least 2048 are required (RFC 7518 §3.3)"
        );
        let e = PrivateKey::from_pem(RSA_2048, Some(Alg::Es256)).unwrap_err();
        assert_eq!(e, "an RSA key signs RS256 or PS256, not ES256");
        let (p256, _) = p256_key();
        let e = PrivateKey::from_pem(&p256, Some(Alg::Ps256)).unwrap_err();
        assert_eq!(e, "a P-256 key signs ES256, not PS256");
    }

    #[cfg(feature = "eddsa")]
    #[test]
    fn an_eddsa_assertion_verifies_with_an_independent_verifier() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let key = PrivateKey::from_pem(&pair.serialize_pem(), None).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(EdDSA)");
        let token = private_key_jwt(&claims(9), &key, KeyIds::kid(Some("ed-1")), &NO_RANDOM);
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["https://auth.example.com/token"]);
        v.validate_exp = false;
        let public = DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes()).unwrap();
        let data = decode::<Seen>(&token, &public, &v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.header.alg, Algorithm::EdDSA);
        assert_eq!(data.claims.jti, B64.encode([9u8; 16]));
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let wrong = DecodingKey::from_ed_pem(other.public_key_pem().as_bytes()).unwrap();
        assert!(decode::<Seen>(&token, &wrong, &v).is_err());
        let e = PrivateKey::from_pem(&pair.serialize_pem(), Some(Alg::Es256)).unwrap_err();
        assert_eq!(e, "an Ed25519 key signs EdDSA, not ES256");
    }

    /// A fresh P-256 key: (PKCS#8 PEM private key, SPKI PEM public key).
    fn p256_key() -> (String, String) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        (pair.serialize_pem(), pair.public_key_pem())
    }

    #[test]
    fn an_es256_assertion_verifies_with_an_independent_verifier() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let (private, public) = p256_key();
        let key = PrivateKey::from_pem(&private, None).unwrap();
        let token = private_key_jwt(&claims(3), &key, KeyIds::kid(Some("key-2026")), &NO_RANDOM);
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["https://auth.example.com/token"]);
        v.set_issuer(&["svc"]);
        v.validate_exp = false;
        let data = decode::<Seen>(
            &token,
            &DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
            &v,
        )
        .unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(data.header.kid.as_deref(), Some("key-2026"));
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.claims.sub, "svc");
        assert_eq!(data.claims.jti, B64.encode([3u8; 16]));
        // Another key's public half does not verify it.
        let (_, other) = p256_key();
        let wrong = decode::<Seen>(
            &token,
            &DecodingKey::from_ec_pem(other.as_bytes()).unwrap(),
            &v,
        );
        assert!(wrong.is_err());
        // Without a kid, the header has none.
        let plain = private_key_jwt(&claims(3), &key, KeyIds::kid(None), &NO_RANDOM);
        let header = jsonwebtoken::decode_header(&plain).unwrap();
        assert_eq!(header.kid, None);
    }

    #[test]
    fn a_bad_key_is_refused_without_echoing_it() {
        let (private, _) = p256_key();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let body: String = private
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for (pem, says) in [
            ("not a key at all", "expected a PKCS#8 PEM private key"),
            (
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
                "expected a PKCS#8 PEM private key",
            ),
            (
                &*format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
                    &body[..40]
                ),
                "not a P-256",
            ),
            (&*p384.serialize_pem(), "not a P-256"),
        ] {
            let e = PrivateKey::from_pem(pem, None).unwrap_err();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains(&body[..20]), "{e}");
        }
        let key = PrivateKey::from_pem(&private, None).unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(ES256)");
        // CRLF line ends, no final newline, text around the block: still the key.
        let crlf = format!("key:\r\n{}", private.trim_end().replace('\n', "\r\n"));
        assert!(PrivateKey::from_pem(&crlf, None).is_ok());
        // A block with bytes that are not base64.
        let broken = private.replacen(&body[..4], "!!!!", 1);
        let e = PrivateKey::from_pem(&broken, None).unwrap_err();
        assert!(e.contains("expected a PKCS#8 PEM private key"), "{e}");
    }

    #[test]
    fn a_federated_assertion_is_sent_until_its_exp_and_never_echoed() {
        let payload = B64
            .encode(br#"{"iss":"https://k8s","sub":"system:serviceaccount:a:b","exp":1800000100}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl");
        let a = FederatedAssertion::parse(&jwt).unwrap();
        assert_eq!(a.expires_at_secs, 1_800_000_100);
        assert_eq!(a.at(1_800_000_000), Ok(jwt.as_str()));
        // Inside the margin, and after exp: refused, saying when it expired.
        for now in [1_800_000_095, 1_800_000_100, 1_900_000_000] {
            let e = a.at(now).unwrap_err();
            assert!(e.starts_with("expired at 1800000100"), "{e}");
            assert!(!e.contains(&payload), "{e}");
        }
        assert_eq!(format!("{a:?}"), "FederatedAssertion(exp 1800000100)");
        // A fractional exp (some issuers write one) counts by its whole seconds.
        let frac = format!("h.{}.s", B64.encode(br#"{"exp":1800000100.7}"#));
        assert_eq!(
            FederatedAssertion::parse(&frac).unwrap().expires_at_secs,
            1_800_000_100
        );
    }

    #[test]
    fn a_malformed_federated_assertion_is_refused_without_echoing_it() {
        let no_exp = format!("h.{}.s", B64.encode(br#"{"sub":"secret-subject"}"#));
        let text_exp = format!("h.{}.s", B64.encode(br#"{"exp":"soon"}"#));
        let array = format!("h.{}.s", B64.encode(b"[1,2]"));
        for (jwt, says) in [
            ("secret-looking-token", "expected a JWT"),
            ("a.b", "expected a JWT"),
            ("a.b.c.d", "expected a JWT"),
            ("h.!!!.s", "not base64url"),
            (&*array, "not a JSON object"),
            (&*no_exp, "no numeric exp"),
            (&*text_exp, "numeric exp"),
        ] {
            let e = FederatedAssertion::parse(jwt).unwrap_err();
            assert!(e.contains(says), "{jwt}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn es256_signs_the_bytes_p256s_signing_key_signs_and_parts_make_the_same_key() {
        use p256::ecdsa::signature::Signer as _;
        let scalar = [0x42u8; 32];
        let key = PrivateKey::from_p256_scalar(&scalar).unwrap();
        let reference =
            p256::ecdsa::SigningKey::from(p256::SecretKey::from_bytes(&scalar.into()).unwrap());
        for input in [&b""[..], b"a.b", &[0xffu8; 300][..]] {
            let theirs: p256::ecdsa::Signature = reference.sign(input);
            assert_eq!(key.sign(input, &|_| {}), theirs.to_bytes().to_vec());
        }
        // The key from its parts (as a sealed record holds them) is the same key.
        let public = key.p256_public().unwrap();
        assert_eq!(public.len(), 65);
        let parts = PrivateKey::from_p256_parts(&scalar, &public).unwrap();
        assert_eq!(parts.public_jwk(), key.public_jwk());
        assert_eq!(parts.sign(b"x", &|_| {}), key.sign(b"x", &|_| {}));
        // Not a point, or not a scalar: no key.
        assert!(PrivateKey::from_p256_parts(&scalar, &public[..64]).is_none());
        assert!(PrivateKey::from_p256_parts(&[0; 32], &public).is_none());
        let mut compressed = public[..33].to_vec();
        compressed[0] = 2 + (public[64] & 1);
        assert!(PrivateKey::from_p256_parts(&scalar, &compressed).is_none());
        let mut off_curve = public.clone();
        off_curve[64] ^= 1;
        assert!(PrivateKey::from_p256_parts(&scalar, &off_curve).is_none());
    }
}
