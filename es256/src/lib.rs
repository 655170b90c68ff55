//! ES256 (RFC 7518 §3.4: ECDSA over P-256 with SHA-256) and P-256 public keys for the
//! core: `private_key_jwt` assertions and DPoP proofs, one signature per request.
//!
//! A signature's cost is `k·G`, one fixed-base scalar multiplication. `p256` does it
//! with its generic multiplication (about 256 doublings and 64 additions; 0.5 ms inside
//! a component). [`comb`] does it with a table of multiples of `G` in 52 mixed
//! additions, 5 doublings and one addition. The table is a `static` made when the crate is compiled
//! ([`table`], 26,624 bytes of the component's data), so every signature of every instance,
//! the first of a new instance too, takes the short way: a provider that Spin
//! instantiates for one request signs as fast as an interceptor instance that signs
//! for 128.
//!
//! A signature is the one `p256`'s `SigningKey` makes: RFC 6979's deterministic nonce,
//! then `r = x(k·G) mod n` and `s = k⁻¹(z + r·d) mod n` as `ecdsa::hazmat` computes
//! them (the same bytes: tested). A crate of its own so that a component can compile
//! it for speed (the workspace's `component` profile).

use p256::elliptic_curve::{
    Curve as _, Field as _, PrimeField as _,
    ops::{Invert as _, Reduce},
    point::AffineCoordinates as _,
};
use p256::{AffinePoint, FieldBytes, NistP256, NonZeroScalar, PublicKey, Scalar};

mod comb;
mod point;
mod table;

/// The public key of the scalar `d`. `None` only for a point at infinity, which a
/// nonzero scalar below the order never gives.
pub fn public_key(d: &NonZeroScalar) -> Option<PublicKey> {
    let (x, y) = comb::times_generator(d).to_affine()?;
    let point = AffinePoint::from_coordinates(&x.to_repr(), &y.to_repr()).into_option()?;
    PublicKey::from_affine(point).ok()
}

/// The ES256 signature `r || s` of the SHA-256 digest `z` with the key `d`.
pub fn sign(d: &NonZeroScalar, z: &[u8; 32]) -> [u8; 64] {
    let order = NistP256::ORDER;
    let mut nonces =
        rfc6979::KGenerator::<sha2::Sha256, p256::U256>::new(&d.to_repr(), z, &[], &order);
    loop {
        let mut k = FieldBytes::default();
        nonces.fill_next_k(&mut k);
        // A `k` that is zero, or gives `r` or `s` zero (probability about 2⁻²⁵⁶), is
        // followed by the generator's next one, as RFC 6979 §3.4 says.
        if let Some(k) = NonZeroScalar::from_repr(k).into_option()
            && let Some(signature) = signature(d, &k, z)
        {
            return signature;
        }
    }
}

/// `r || s` for the nonce `k`, or `None` when `r` or `s` is zero.
fn signature(d: &NonZeroScalar, k: &NonZeroScalar, z: &[u8; 32]) -> Option<[u8; 64]> {
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*z));
    let (x, _) = comb::times_generator(k).to_affine()?;
    let r = <Scalar as Reduce<FieldBytes>>::reduce(&x.to_repr());
    let s = *k.invert() * (z + r * d.as_ref());
    if bool::from(r.is_zero() | s.is_zero()) {
        return None;
    }
    let mut out = [0; 64];
    out[..32].copy_from_slice(&r.to_repr());
    out[32..].copy_from_slice(&s.to_repr());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comb::{ENTRIES, W, WINDOWS};
    use crate::point::{Fe, Projective};
    use p256::elliptic_curve::group::Group as _;
    use p256::elliptic_curve::subtle::Choice;
    use p256::{AffinePoint, ProjectivePoint};
    use sha2::Digest as _;

    fn scalar(seed: u64) -> NonZeroScalar {
        let bytes = sha2::Sha256::digest(seed.to_be_bytes());
        NonZeroScalar::from_repr(bytes).unwrap()
    }

    /// The bytes `ecdsa::hazmat::sign_prehashed_rfc6979` makes (what `p256`'s
    /// `SigningKey` signs with), for keys and digests that vary.
    #[test]
    fn signatures_are_the_bytes_ecdsa_signs() {
        let reference = |d: &NonZeroScalar, z: &[u8; 32]| -> [u8; 64] {
            let (signature, _) =
                ecdsa::hazmat::sign_prehashed_rfc6979::<NistP256, sha2::Sha256>(d, z, &[]);
            signature.to_bytes().into()
        };
        for seed in 0..64u64 {
            let d = scalar(seed);
            let z: [u8; 32] = sha2::Sha256::digest(seed.to_le_bytes()).into();
            assert_eq!(sign(&d, &z), reference(&d, &z), "seed {seed}");
        }
        // A digest at or above the order (all ones) is reduced, as ECDSA says.
        let d = scalar(99);
        assert_eq!(sign(&d, &[0xff; 32]), reference(&d, &[0xff; 32]));
    }

    /// The order minus `m`.
    fn minus(m: u64) -> Scalar {
        -Scalar::from(m)
    }

    /// Affine coordinates of a `p256` point, as this crate's field elements.
    fn coordinates(point: ProjectivePoint) -> Option<(Fe, Fe)> {
        let affine = point.to_affine();
        if bool::from(affine.is_identity()) {
            return None;
        }
        Some((
            Fe::from_repr(affine.x()).unwrap(),
            Fe::from_repr(affine.y()).unwrap(),
        ))
    }

    #[test]
    fn the_comb_multiplies_as_p256_does() {
        let mut scalars: Vec<Scalar> = [0u64, 1, 2, 15, 16, 17, 31, 32, 33, 1023, 1024, 1 << 40]
            .into_iter()
            .map(Scalar::from)
            .collect();
        scalars.extend([minus(1), minus(2), minus(16), minus(17)]);
        // 2^255, and 2^255 - 1 (every digit carries into the next).
        let mut top = [0u8; 32];
        top[0] = 0x80;
        scalars.push(Scalar::from_repr(top.into()).unwrap());
        let mut ones = [0xff; 32];
        ones[0] = 0x7f;
        scalars.push(Scalar::from_repr(ones.into()).unwrap());
        scalars.extend((0..200u64).map(|seed| *scalar(seed)));
        for k in scalars {
            assert_eq!(
                comb::times_generator(&k).to_affine(),
                coordinates(ProjectivePoint::GENERATOR * k),
                "{k:?}"
            );
        }
    }

    /// The formulas against `p256`'s points, on the cases complete formulas are for:
    /// the identity on either side, a point added to itself and to its negation.
    #[test]
    fn the_formulas_agree_with_p256_on_every_case() {
        let points: Vec<ProjectivePoint> = [1u64, 2, 3, 1 << 20]
            .into_iter()
            .map(|m| ProjectivePoint::GENERATOR * Scalar::from(m))
            .chain((0..6).map(|seed| ProjectivePoint::GENERATOR * *scalar(seed)))
            .collect();
        let ours = |p: &ProjectivePoint| match coordinates(*p) {
            Some((x, y)) => Projective::from_affine(x, y),
            None => Projective::IDENTITY,
        };
        for p in &points {
            let mut all = vec![ProjectivePoint::IDENTITY, *p, -*p];
            all.extend(&points);
            for q in all {
                let (x, y) = coordinates(*p).unwrap();
                let mut mixed = ours(&q);
                mixed.add_affine(&x, &y, Choice::from(0));
                assert_eq!(mixed.to_affine(), coordinates(q + p));
                let mut skipped = ours(&q);
                skipped.add_affine(&x, &y, Choice::from(1));
                assert_eq!(skipped.to_affine(), coordinates(q));
                assert_eq!(ours(&q).add(&ours(p)).to_affine(), coordinates(q + p));
                assert_eq!(ours(&q).double().to_affine(), coordinates(q.double()));
            }
        }
        assert_eq!(Projective::IDENTITY.double().to_affine(), None);
    }

    /// An element through its Montgomery words and back is itself (the comb's
    /// selection works on the words).
    #[test]
    fn an_element_round_trips_through_its_words() {
        let (a, b) = coordinates(ProjectivePoint::GENERATOR * *scalar(3)).unwrap();
        for fe in [a, b, Fe::ZERO, Fe::ONE, -Fe::ONE] {
            assert_eq!(crate::point::element(crate::point::words(fe)), fe);
        }
    }

    #[test]
    fn radix32_digits_are_small_and_add_up_to_the_scalar() {
        for k in [Scalar::ZERO, Scalar::ONE, minus(1), *scalar(5), *scalar(6)] {
            let digits = comb::radix32(&k);
            assert!(digits.iter().all(|d| (-16..=15).contains(d)), "{digits:?}");
            // Horner's rule from the top digit, in the scalar field.
            let sum = digits.iter().rev().fold(Scalar::ZERO, |acc, d| {
                let d = if *d < 0 {
                    -Scalar::from(d.unsigned_abs() as u64)
                } else {
                    Scalar::from(*d as u64)
                };
                acc * Scalar::from(32u64) + d
            });
            assert_eq!(sum, k);
        }
    }

    /// A nonce whose `s` would be zero (`z = -r·d`) is refused, so that `sign` takes
    /// the generator's next one; a nonzero `s` with the same `k` is not.
    #[test]
    fn a_zero_s_is_refused() {
        let (d, k) = (scalar(1), scalar(2));
        let (x, _) = comb::times_generator(&k).to_affine().unwrap();
        let r = <Scalar as Reduce<FieldBytes>>::reduce(&x.to_repr());
        let z: [u8; 32] = (-(r * d.as_ref())).to_repr().into();
        assert_eq!(signature(&d, &k, &z), None);
        let z: [u8; 32] = (Scalar::ONE - r * d.as_ref()).to_repr().into();
        assert!(signature(&d, &k, &z).is_some());
    }

    #[test]
    fn a_public_key_is_the_one_p256_derives() {
        for seed in 0..16u64 {
            let d = scalar(seed);
            let secret = p256::SecretKey::from(d);
            assert_eq!(public_key(&d), Some(secret.public_key()), "seed {seed}");
        }
    }

    /// `m·32^(2j)·G` at `[j][m - 1]`, by `p256`'s own arithmetic, affine.
    fn multiples_of_g() -> Vec<Vec<AffinePoint>> {
        let mut base = ProjectivePoint::GENERATOR;
        let mut table = Vec::new();
        for _ in 0..WINDOWS {
            let mut window = Vec::new();
            let mut multiple = base;
            for _ in 0..ENTRIES {
                window.push(multiple.to_affine());
                multiple += base;
            }
            table.push(window);
            for _ in 0..2 * W {
                base = base.double();
            }
        }
        table
    }

    /// The static table is what `p256` computes (a wrong or stale `table.rs` fails
    /// here, not only in a signature).
    #[test]
    fn the_table_holds_the_multiples_of_g() {
        for (j, window) in multiples_of_g().iter().enumerate() {
            for (m, point) in window.iter().enumerate() {
                let [x, y] = table::TABLE[j][m];
                assert_eq!(x.to_repr(), point.x(), "x of {} at window {j}", m + 1);
                assert_eq!(y.to_repr(), point.y(), "y of {} at window {j}", m + 1);
            }
        }
    }

    /// Writes `src/table.rs` from `p256`'s arithmetic:
    /// `cargo test -p token-provider-es256 -- --ignored write_the_table`.
    #[test]
    #[ignore = "writes src/table.rs"]
    fn write_the_table() {
        let hex =
            |bytes: FieldBytes| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        let mut text = String::from(TABLE_HEADER);
        text.push_str("pub(crate) static TABLE: [Window; WINDOWS] = [\n");
        for window in multiples_of_g() {
            text.push_str("    [\n");
            for point in window {
                text.push_str(&format!(
                    "        p(\n            \"{}\",\n            \"{}\",\n        ),\n",
                    hex(point.x()),
                    hex(point.y())
                ));
            }
            text.push_str("    ],\n");
        }
        text.push_str("];\n");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/table.rs");
        std::fs::write(path, text).unwrap();
    }

    const TABLE_HEADER: &str = r#"//! The comb's table: `m·32^(2j)·G` at `[j][m - 1]`, for `m` in 1..=16 and `j` in
//! 0..26, affine `[x, y]`, as big-endian hex made into field elements when the crate
//! is compiled. Generated from `p256`'s arithmetic by
//! `cargo test -p token-provider-es256 -- --ignored write_the_table`; the test
//! `the_table_holds_the_multiples_of_g` checks it against `p256` again.

use crate::comb::{WINDOWS, Window};
use crate::point::Fe;

/// The affine point `(x, y)`.
const fn p(x: &str, y: &str) -> [Fe; 2] {
    [Fe::from_hex_vartime(x), Fe::from_hex_vartime(y)]
}

"#;
}
