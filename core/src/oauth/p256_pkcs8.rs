//! A P-256 private key from PKCS#8 DER: a `PrivateKeyInfo` (RFC 5208) or
//! `OneAsymmetricKey` (RFC 5958) for `id-ecPublicKey` on `prime256v1`, holding an
//! `ECPrivateKey` (RFC 5915).
//!
//! The structure is walked here with `der`'s tag-length-value reader (its header,
//! length and bit-string rules), and the key and point are checked by `p256` itself.
//! `pkcs8`'s and `sec1`'s typed decoders (`SecretKey::from_pkcs8_der`) do the same
//! and take the same keys (the tests check that on one-byte changes, up to 29 values at each
//! structural byte and one at each byte of the scalar and the point, and on every
//! truncation and deletion of keys in eight layouts), but a component with them is
//! 18.2 KB larger than with this walk (docs/performance.md).

use der::{Decode, Header, Reader, SliceReader, Tag, TagNumber};
use p256::elliptic_curve::sec1::ToSec1Point;

/// The content of `AlgorithmIdentifier { id-ecPublicKey, prime256v1 }`: DER has one
/// encoding of it, so the bytes are the check.
const ALGORITHM: [u8; 19] = [
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // 1.2.840.10045.2.1
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // 1.2.840.10045.3.1.7
];

/// `ECParameters` naming `prime256v1`, the only curve an `ECPrivateKey` here may name.
const NAMED_CURVE: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The key in `der`, or `None` when it is not a well-formed P-256 PKCS#8 key whose
/// `ECPrivateKey` public key (when it carries one) is its own. A v2 key's outer
/// `publicKey` is only checked to be a bit string, as `pkcs8` does.
#[cfg(test)]
pub(crate) fn secret_key(der: &[u8]) -> Option<p256::SecretKey> {
    key_pair(der).map(|(secret, _)| secret)
}

/// [`secret_key`] with its public key, derived once (and compared with the one the key
/// carries, if it carries one), so that a signer need not derive it again.
pub(crate) fn key_pair(der: &[u8]) -> Option<(p256::SecretKey, p256::PublicKey)> {
    let mut info = sequence(der)?;
    let v2 = match expect(&mut info, Tag::Integer)? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    if expect(&mut info, Tag::Sequence)? != ALGORITHM {
        return None;
    }
    let private_key = expect(&mut info, Tag::OctetString)?;
    // `attributes [0] IMPLICIT SET OF`: skipped, as `pkcs8` does.
    if let Some((tag, _)) = context(&mut info, 0)? {
        tag.is_constructed().then_some(())?;
    }
    // `publicKey [1] IMPLICIT BIT STRING`: present exactly when the version says so.
    let public_key = context(&mut info, 1)?;
    if let Some((tag, value)) = public_key {
        (!tag.is_constructed()).then_some(())?;
        bit_string(value)?;
    }
    if v2 != public_key.is_some() {
        return None;
    }
    // Later versions' fields: each an explicit context-specific value, skipped.
    while !info.is_finished() {
        let (tag, value) = next(&mut info)?;
        (tag.is_context_specific() && tag.is_constructed()).then_some(())?;
        only(value)?;
    }
    ec_private_key(private_key)
}

/// `ECPrivateKey { version 1, privateKey, [0] parameters OPTIONAL, [1] publicKey
/// OPTIONAL }`, with the public key derived from the scalar.
fn ec_private_key(der: &[u8]) -> Option<(p256::SecretKey, p256::PublicKey)> {
    let mut key = sequence(der)?;
    if expect(&mut key, Tag::Integer)? != [1] {
        return None;
    }
    let scalar = expect(&mut key, Tag::OctetString)?;
    if let Some((tag, value)) = context(&mut key, 0)? {
        (tag.is_constructed() && value == NAMED_CURVE).then_some(())?;
    }
    let point = match context(&mut key, 1)? {
        Some((tag, value)) => {
            tag.is_constructed().then_some(())?;
            let (Tag::BitString, bits) = only(value)? else {
                return None;
            };
            match bit_string(bits)? {
                (0, bytes) => Some(bytes),
                _ => return None,
            }
        }
        None => None,
    };
    if !key.is_finished() {
        return None;
    }
    let secret = p256::SecretKey::from_slice(scalar).ok()?;
    let public = token_provider_es256::public_key(&secret.to_nonzero_scalar())?;
    if let Some(point) = point {
        // As `validate_public_key` checks it: the derived key, encoded the same way.
        let point = p256::Sec1Point::from_bytes(point).ok()?;
        (public.to_sec1_point(point.is_compressed()) == point).then_some(())?;
    }
    Some((secret, public))
}

/// A reader over the content of the one `SEQUENCE` that `der` is.
pub(super) fn sequence(der: &[u8]) -> Option<SliceReader<'_>> {
    match only(der)? {
        (Tag::Sequence, content) => SliceReader::new(content).ok(),
        _ => None,
    }
}

/// The next element's tag and content.
pub(super) fn next<'a>(reader: &mut SliceReader<'a>) -> Option<(Tag, &'a [u8])> {
    let header = Header::decode(reader).ok()?;
    let content = reader.read_slice(header.length()).ok()?;
    Some((header.tag(), content))
}

/// The next element's content, when its tag is `tag`.
pub(super) fn expect<'a>(reader: &mut SliceReader<'a>, tag: Tag) -> Option<&'a [u8]> {
    next(reader).filter(|(t, _)| *t == tag).map(|(_, c)| c)
}

/// The one element `der` holds, with nothing after it.
pub(super) fn only(der: &[u8]) -> Option<(Tag, &[u8])> {
    let mut reader = SliceReader::new(der).ok()?;
    let element = next(&mut reader)?;
    reader.is_finished().then_some(element)
}

/// The next element when it is context-specific `[number]`: `Some(None)` when it is
/// something else or nothing is left, `None` when it cannot be read.
pub(super) fn context<'a>(
    reader: &mut SliceReader<'a>,
    number: u32,
) -> Option<Option<(Tag, &'a [u8])>> {
    if reader.is_finished() {
        return Some(None);
    }
    let tag = Tag::peek(reader).ok()?;
    if !tag.is_context_specific() || tag.number() != TagNumber(number) {
        return Some(None);
    }
    next(reader).map(Some)
}

/// A `BIT STRING`'s unused-bit count and bytes, by `der`'s rules.
pub(super) fn bit_string(content: &[u8]) -> Option<(u8, &[u8])> {
    let (&unused, bytes) = content.split_first()?;
    der::asn1::BitStringRef::new(unused, bytes).ok()?;
    Some((unused, bytes))
}

#[cfg(test)]
mod tests {
    use super::secret_key;
    use p256::elliptic_curve::sec1::ToSec1Point;
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

    /// One DER element.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    const ALGORITHM_ID: [u8; 21] = [
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];

    /// How a key is laid out: each field that PKCS#8 and RFC 5915 leave optional.
    #[derive(Clone, Copy, Debug, Default)]
    struct Layout {
        /// `ECPrivateKey`'s `[0] parameters` (the curve's OID).
        parameters: bool,
        /// `ECPrivateKey`'s `[1] publicKey`, and whether compressed.
        inner_public: Option<bool>,
        /// `OneAsymmetricKey` (version 1) with its `[1] publicKey`.
        v2: bool,
        /// `[0] attributes`.
        attributes: bool,
        /// A later version's `[2]` field after everything else (v2 only).
        extension: bool,
        /// The scalar without its leading zero bytes (for keys that have some).
        short_scalar: bool,
    }

    fn encode(key: &p256::SecretKey, l: Layout) -> Vec<u8> {
        let bytes = key.to_bytes();
        let scalar: &[u8] = if l.short_scalar {
            let zeros = bytes.iter().take_while(|b| **b == 0).count();
            &bytes[zeros..]
        } else {
            &bytes
        };
        let mut ec = tlv(0x02, &[1]);
        ec.extend(tlv(0x04, scalar));
        if l.parameters {
            ec.extend(tlv(0xa0, &ALGORITHM_ID[11..]));
        }
        let point = |compress| key.public_key().to_sec1_point(compress).as_bytes().to_vec();
        if let Some(compress) = l.inner_public {
            let bits = [&[0u8][..], &point(compress)].concat();
            ec.extend(tlv(0xa1, &tlv(0x03, &bits)));
        }
        let mut info = tlv(0x02, &[u8::from(l.v2)]);
        info.extend(ALGORITHM_ID);
        info.extend(tlv(0x04, &tlv(0x30, &ec)));
        if l.attributes {
            let attribute = tlv(
                0x30,
                &[&tlv(0x06, &[0x2a, 0x03])[..], &tlv(0x31, &[])].concat(),
            );
            info.extend(tlv(0xa0, &attribute));
        }
        if l.v2 {
            info.extend(tlv(0x81, &[&[0u8][..], &point(false)].concat()));
        }
        if l.extension {
            info.extend(tlv(0xa2, &tlv(0x05, &[])));
        }
        tlv(0x30, &info)
    }

    /// A key whose scalar starts with a zero byte, so it has a short form too.
    fn key(seed: u8, leading_zero: bool) -> p256::SecretKey {
        let mut bytes = [seed; 32];
        bytes[0] = if leading_zero { 0 } else { 0x5a };
        p256::SecretKey::from_slice(&bytes).unwrap()
    }

    fn layouts() -> Vec<Layout> {
        let base = Layout {
            inner_public: Some(false),
            ..Layout::default()
        };
        vec![
            base,
            Layout::default(),
            Layout {
                inner_public: Some(true),
                ..base
            },
            Layout {
                parameters: true,
                ..base
            },
            Layout {
                v2: true,
                ..Layout::default()
            },
            Layout {
                attributes: true,
                ..base
            },
            Layout {
                v2: true,
                attributes: true,
                extension: true,
                parameters: true,
                ..base
            },
            Layout {
                short_scalar: true,
                ..base
            },
        ]
    }

    /// `pkcs8`/`sec1`'s verdict, the reference.
    fn reference(der: &[u8]) -> Option<p256::SecretKey> {
        p256::SecretKey::from_pkcs8_der(der).ok()
    }

    /// Whether the walk agrees with the reference on `der`, and what both said.
    fn judged_alike(der: &[u8]) -> Option<bool> {
        let ours = secret_key(der).map(|k| k.to_bytes());
        let theirs = reference(der).map(|k| k.to_bytes());
        (ours == theirs).then_some(theirs.is_some())
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn every_layout_of_a_key_reads_as_the_key_itself() {
        for (seed, layout) in (1..).zip(layouts()) {
            let key = key(seed, true);
            let der = encode(&key, layout);
            let ours = secret_key(&der).unwrap_or_else(|| panic!("{layout:?}: {}", hex(&der)));
            assert_eq!(ours.to_bytes(), key.to_bytes(), "{layout:?}");
            let theirs = reference(&der).unwrap_or_else(|| panic!("{layout:?} (reference)"));
            assert_eq!(theirs.to_bytes(), key.to_bytes(), "{layout:?}");
        }
        // What the encoders of `p256` and of `rcgen` (ring) write.
        let key = key(9, false);
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(
            secret_key(der.as_bytes()).unwrap().to_bytes(),
            key.to_bytes()
        );
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = generated.serialize_der();
        let ours = secret_key(&der).unwrap();
        assert_eq!(Some(ours.to_bytes()), reference(&der).map(|k| k.to_bytes()));
    }

    /// Where in `der` the scalar's and the points' coordinate bytes are: values, not
    /// structure, so one change of each is enough there.
    fn payload(der: &[u8], key: &p256::SecretKey) -> Vec<std::ops::Range<usize>> {
        let point = key.public_key().to_sec1_point(false);
        let x = &point.as_bytes()[1..33];
        let bytes = key.to_bytes();
        let scalar = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
        let mut ranges = Vec::new();
        for needle in [scalar, x] {
            let mut from = 0;
            while let Some(at) = der[from..].windows(needle.len()).position(|w| w == needle) {
                let start = from + at;
                // A point's y follows its x.
                let end = start + if needle == x { 64 } else { needle.len() };
                ranges.push(start + 1..end.min(der.len()));
                from = start + 1;
            }
        }
        ranges
    }

    #[test]
    fn one_byte_changes_truncations_and_deletions_are_judged_as_pkcs8_judges_them() {
        let (mut taken, mut refused) = (0, 0);
        for (seed, layout) in (1..).zip(layouts()) {
            let key = key(seed, true);
            let der = encode(&key, layout);
            let payload = payload(&der, &key);
            let mut judge = |candidate: &[u8]| match judged_alike(candidate) {
                Some(true) => taken += 1,
                Some(false) => refused += 1,
                None => panic!("{layout:?}: judged apart: {}", hex(candidate)),
            };
            for i in 0..der.len() {
                let b = der[i];
                let values = [
                    0x00,
                    0x01,
                    0x02,
                    0x03,
                    0x04,
                    0x05,
                    0x06,
                    0x07,
                    0x08,
                    0x1f,
                    0x20,
                    0x30,
                    0x31,
                    0x7f,
                    0x80,
                    0x81,
                    0x82,
                    0x83,
                    0x84,
                    0xa0,
                    0xa1,
                    0xa2,
                    0xa3,
                    0xbf,
                    0xff,
                    b ^ 0x01,
                    b ^ 0x20,
                    b.wrapping_add(1),
                    b.wrapping_sub(1),
                ];
                let values = if payload.iter().any(|r| r.contains(&i)) {
                    &values[25..26]
                } else {
                    &values[..]
                };
                for &v in values.iter().filter(|v| **v != b) {
                    let mut changed = der.clone();
                    changed[i] = v;
                    judge(&changed);
                }
                judge(&der[..i]);
                judge(&[&der[..i], &der[i + 1..]].concat());
            }
            judge(&[&der[..], &[0]].concat());
        }
        // Both sides of the line were reached: keys still taken after a change (a
        // changed scalar byte is another valid key where no public key pins it) and
        // refused ones.
        assert!(
            taken > 100 && refused > 10_000,
            "{taken} taken, {refused} refused"
        );
    }

    #[test]
    fn a_key_whose_public_key_is_another_keys_is_refused() {
        let (a, b) = (key(3, false), key(4, false));
        let mut der = encode(&a, layouts()[0]);
        let theirs = b.public_key().to_sec1_point(false);
        let at = der.len() - 64;
        der[at..].copy_from_slice(&theirs.as_bytes()[1..]);
        assert!(secret_key(&der).is_none());
        assert!(reference(&der).is_none());
    }
}
