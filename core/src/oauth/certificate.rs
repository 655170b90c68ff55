//! A client's X.509 certificate (`client_certificate`), for servers that register a
//! certificate rather than a key (Microsoft Entra ID): what a signed assertion's header
//! names it by, `x5t#S256` (RFC 7515 §4.1.8: the base64url SHA-256 of its DER), and
//! the check that it certifies `client_private_key`'s public key, so that a wrong file
//! is a `config` error here rather than a refusal there.
//!
//! Only the path to `subjectPublicKeyInfo` is read (RFC 5280 §4.1), with the same
//! tag-length-value walk the P-256 key reader uses; nothing else of the certificate
//! (its validity, its issuer) is judged: the server does that. Certificate credentials
//! are RSA keys (Entra ID takes no other), so only the RSA build has this module; it
//! reads a certificate for any key that build signs with.

use super::client_auth::{PrivateKey, pem_der};
use super::p256_pkcs8::{bit_string, context, expect, sequence};
use base64ct::{Base64UrlUnpadded as B64, Encoding as _};
use der::{Reader as _, SliceReader, Tag};
use sha2::{Digest as _, Sha256};

/// What a PEM that is no certificate is told (it echoes none of the text).
const NOT_A_CERTIFICATE: &str =
    "expected an X.509 certificate in PEM (-----BEGIN CERTIFICATE-----)";

/// The `x5t#S256` of the first certificate in `pem` (a chain may follow it: the
/// leaf comes first; other blocks, such as the key in a combined file, are passed
/// over), when that certificate's public key is `key`'s. The errors say what is
/// wrong and echo nothing of the text.
pub(crate) fn thumbprint(pem: &str, key: &PrivateKey) -> Result<String, String> {
    let der = pem_der(
        pem,
        ["-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"],
    )
    .ok_or(NOT_A_CERTIFICATE)?;
    let bits = public_key_bits(&der).ok_or(NOT_A_CERTIFICATE)?;
    if !certifies(bits, key) {
        return Err("is not client_private_key's certificate: the first certificate in it holds another public key".into());
    }
    Ok(B64::encode_string(&Sha256::digest(&der)))
}

/// The `subjectPublicKey` bits of `Certificate { tbsCertificate { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, … }, signatureAlgorithm, signatureValue }`.
fn public_key_bits(der: &[u8]) -> Option<&[u8]> {
    let mut certificate = sequence(der)?;
    let tbs = expect(&mut certificate, Tag::Sequence)?;
    expect(&mut certificate, Tag::Sequence)?;
    expect(&mut certificate, Tag::BitString)?;
    certificate.is_finished().then_some(())?;
    let mut tbs = SliceReader::new(tbs).ok()?;
    context(&mut tbs, 0)?;
    expect(&mut tbs, Tag::Integer)?;
    for _ in 0..4 {
        expect(&mut tbs, Tag::Sequence)?;
    }
    let mut spki = SliceReader::new(expect(&mut tbs, Tag::Sequence)?).ok()?;
    expect(&mut spki, Tag::Sequence)?;
    let bits = expect(&mut spki, Tag::BitString)?;
    spki.is_finished().then_some(())?;
    match bit_string(bits)? {
        (0, bytes) => Some(bytes),
        _ => None,
    }
}

/// Whether `bits` (a `subjectPublicKey`) is `key`'s public key: the same JWK members
/// (RFC 7638's), from an uncompressed EC point, an Ed25519 key, or an RSA
/// `RSAPublicKey { modulus, publicExponent }`.
fn certifies(bits: &[u8], key: &PrivateKey) -> bool {
    let jwk = key.public_jwk();
    let member = |name: &str| {
        jwk.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let b64 = |bytes: &[u8]| B64::encode_string(bytes);
    match member("kty") {
        Some("EC") => match bits.split_first() {
            Some((4, xy)) if xy.len() == 64 => {
                member("x") == Some(&b64(&xy[..32])) && member("y") == Some(&b64(&xy[32..]))
            }
            _ => false,
        },
        Some("OKP") => member("x") == Some(&b64(bits)),
        Some("RSA") => rsa_public_key(bits)
            .is_some_and(|(n, e)| member("n") == Some(&b64(n)) && member("e") == Some(&b64(e))),
        _ => false,
    }
}

/// `RSAPublicKey`'s two integers, their leading zero bytes dropped (a JWK's form).
fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut key = sequence(der)?;
    let n = expect(&mut key, Tag::Integer)?;
    let e = expect(&mut key, Tag::Integer)?;
    key.is_finished().then_some(())?;
    Some((minimal(n), minimal(e)))
}

/// An unsigned integer's bytes without leading zeros.
fn minimal(int: &[u8]) -> &[u8] {
    let zeros = int.iter().take_while(|b| **b == 0).count();
    &int[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::p256_pem;

    /// A self-signed certificate for `key_pem`'s key, as `rcgen` makes one (the same
    /// DER a CA would issue for the test's purpose: the walk reads only the path to
    /// the public key).
    fn certificate_for(key_pem: &str) -> (String, Vec<u8>) {
        let pair = rcgen::KeyPair::from_pem(key_pem).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.example".into()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn the_thumbprint_is_the_sha256_of_the_certificate_der() {
        let pem = p256_pem();
        let key = PrivateKey::from_pem(pem, None).unwrap();
        let (cert, der) = certificate_for(pem);
        let expected = B64::encode_string(&Sha256::digest(&der));
        assert_eq!(thumbprint(&cert, &key).unwrap(), expected);
        assert_eq!(expected.len(), 43, "32 bytes, base64url without padding");
        // A chain: the leaf is the first certificate.
        let (other, _) = certificate_for(p256_pem());
        assert_eq!(
            thumbprint(&format!("{cert}{other}"), &key).unwrap(),
            expected
        );
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let key = PrivateKey::from_pem(p256_pem(), None).unwrap();
        let (other, _) = certificate_for(p256_pem());
        let e = thumbprint(&other, &key).unwrap_err();
        assert!(e.contains("another public key"), "{e}");
    }

    #[test]
    fn an_rsa_certificate_matches_its_key_and_not_another() {
        let pem = include_str!("../../../tests/fixtures/rsa-2048.pem");
        let key = PrivateKey::from_pem(pem, Some(super::super::client_auth::Alg::Ps256)).unwrap();
        let (cert, der) = certificate_for(pem);
        assert_eq!(
            thumbprint(&cert, &key).unwrap(),
            B64::encode_string(&Sha256::digest(&der))
        );
        let (p256_cert, _) = certificate_for(p256_pem());
        assert!(thumbprint(&p256_cert, &key).is_err());
    }

    #[test]
    fn what_is_no_certificate_is_told_so_and_echoed_nowhere() {
        let key_pem = p256_pem().to_string();
        let key = PrivateKey::from_pem(&key_pem, None).unwrap();
        let (cert, _) = certificate_for(&key_pem);
        let body: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        // The certificate with its third base64 line left out.
        let cut: Vec<&str> = cert
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, l)| l)
            .collect();
        let cases = [
            String::new(),
            "not a pem".into(),
            // The certificate of another key, with this key after it.
            format!("{}{key_pem}", certificate_for(p256_pem()).0),
            key_pem.clone(),
            // Valid base64 that is not a certificate: the key's DER under the label.
            key_pem.replace("PRIVATE KEY", "CERTIFICATE"),
            cut.join("\n"),
        ];
        for (i, case) in cases.iter().enumerate() {
            let e = thumbprint(case, &key).unwrap_err();
            assert!(!e.contains("MII") && !e.contains(&body[..20]), "{i}: {e}");
        }
        assert!(
            thumbprint(&cases[2], &key)
                .unwrap_err()
                .contains("another public key")
        );
        assert_eq!(thumbprint(&cases[4], &key).unwrap_err(), NOT_A_CERTIFICATE);
        assert_eq!(thumbprint(&cases[5], &key).unwrap_err(), NOT_A_CERTIFICATE);
        // The key and its certificate in one file, as some tools write them: the
        // certificate is found.
        assert!(thumbprint(&format!("{key_pem}{cert}"), &key).is_ok());
    }

    /// A megabyte between the labels (valid base64, not DER of a certificate) is
    /// refused as no certificate, as the empty block is.
    #[test]
    fn an_oversized_or_empty_block_is_no_certificate() {
        let key = PrivateKey::from_pem(p256_pem(), None).unwrap();
        let block = |body: &str| {
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        };
        for body in ["A".repeat(1 << 20), String::new()] {
            assert_eq!(
                thumbprint(&block(&body), &key).unwrap_err(),
                NOT_A_CERTIFICATE
            );
        }
    }

    #[test]
    fn every_truncation_of_the_der_is_refused_without_a_panic() {
        let (_, der) = certificate_for(p256_pem());
        assert!(public_key_bits(&der).is_some());
        for len in 0..der.len() {
            assert!(public_key_bits(&der[..len]).is_none(), "{len}");
        }
    }
}
