//! A DPoP proof checker (RFC 9449 §4.3, §7.1) for the test kit's servers: what an
//! authorization server checks of a token request's proof and a resource server of a
//! request's, written from the RFC, independent of the component's code (it verifies
//! with `jsonwebtoken`, not the core's signers).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// What a proof must say for the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `htm`.
    pub method: &'a str,
    /// `htu`: the request's URL without query and fragment.
    pub htu: &'a str,
    /// The access token the request carries (`ath`); `None` for a token request.
    pub access_token: Option<&'a str>,
    /// The thumbprint the token is bound to (`cnf.jkt`); `None` for a token request.
    pub jkt: Option<&'a str>,
    /// The nonce the server wants, if it wants one.
    pub nonce: Option<&'a str>,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No nonce, or not the server's: `use_dpop_nonce`.
    UseNonce,
    /// Anything else, said in words.
    Invalid(String),
}

/// Proofs seen, for `jti` replay.
#[derive(Debug, Default)]
pub struct Checker {
    seen: HashSet<String>,
}

impl Checker {
    /// The key's thumbprint if `proof` is good for `expect` at `now_secs` (an `iat`
    /// within 60 s either way).
    pub fn check(
        &mut self,
        proof: &str,
        expect: &Expect<'_>,
        now_secs: u64,
    ) -> Result<String, Refusal> {
        let invalid = |why: &str| Refusal::Invalid(why.to_string());
        let (jwk, claims) = verified(proof)?;
        if claims["htm"] != expect.method {
            return Err(invalid("htm"));
        }
        if claims["htu"] != expect.htu {
            return Err(Refusal::Invalid(format!(
                "htu {} for {}",
                claims["htu"], expect.htu
            )));
        }
        let iat = claims["iat"].as_u64().ok_or_else(|| invalid("iat"))?;
        if iat.abs_diff(now_secs) > 60 {
            return Err(invalid("iat"));
        }
        let jti = claims["jti"].as_str().ok_or_else(|| invalid("jti"))?;
        if !self.seen.insert(jti.to_string()) {
            return Err(invalid("jti replayed"));
        }
        let ath = expect
            .access_token
            .map(|t| B64.encode(Sha256::digest(t.as_bytes())));
        if claims.get("ath").and_then(|a| a.as_str()) != ath.as_deref() {
            return Err(invalid("ath"));
        }
        let jkt = thumbprint(&jwk).ok_or_else(|| invalid("jwk members"))?;
        if expect.jkt.is_some_and(|bound| bound != jkt) {
            return Err(invalid("cnf.jkt"));
        }
        if let Some(nonce) = expect.nonce
            && claims["nonce"] != nonce
        {
            return Err(Refusal::UseNonce);
        }
        Ok(jkt)
    }
}

/// The public key in `proof`'s header and its claims, if it is a `dpop+jwt` signed by
/// that key (and the key holds no private part).
fn verified(proof: &str) -> Result<(serde_json::Value, serde_json::Value), Refusal> {
    let invalid = |why: &str| Refusal::Invalid(why.to_string());
    let header = proof.split('.').next().unwrap_or_default();
    let header: serde_json::Value = B64
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("header is not base64url JSON"))?;
    if header["typ"] != "dpop+jwt" {
        return Err(invalid("typ is not dpop+jwt"));
    }
    let jwk = header["jwk"].clone();
    if jwk.get("d").is_some() || jwk.get("p").is_some() {
        return Err(invalid("the jwk holds a private key"));
    }
    let alg: jsonwebtoken::Algorithm = header["alg"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| invalid("alg"))?;
    let key: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|_| invalid("jwk"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&key).map_err(|_| invalid("jwk"))?;
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
        .map_err(|e| Refusal::Invalid(format!("signature: {e}")))?
        .claims;
    Ok((jwk, claims))
}

/// RFC 7638: the SHA-256 of the required members, in order, as JSON.
pub fn thumbprint(jwk: &serde_json::Value) -> Option<String> {
    let names: &[&str] = match jwk["kty"].as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut parts = Vec::new();
    for name in names {
        let value = serde_json::to_string(jwk[*name].as_str()?).ok()?;
        parts.push(format!("\"{name}\":{value}"));
    }
    let json = format!("{{{}}}", parts.join(","));
    Some(B64.encode(Sha256::digest(json.as_bytes())))
}
