//! ES256 (RFC 7518 §3.4: ECDSA over P-256 with SHA-256) and P-256 public keys for the
//! core: `private_key_jwt` assertions and DPoP proofs, one signature per request.
//!
//! A signature's cost is `k·G`, one fixed-base scalar multiplication. `p256` does it
//! with its generic multiplication (about 256 doublings and 64 additions; 0.5 ms inside
//! a component). [`comb`] does it with a table of multiples of `G` in 52 additions and
//! 5 doublings, about 4.5 times faster, but the table is built once per instance (in
//! its linear memory, gone with it) for about 2.5 generic multiplications. A provider
//! that Spin instantiates for one request signs once or twice; an interceptor instance
//! signs a DPoP proof for every request it serves (up to 128 in Spin). So an instance
//! makes its first [`GENERIC_SIGNATURES`] signatures without the table and builds it
//! for the next: an instance that signs once pays nothing for the table, and one that
//! signs often pays the build once. Deriving a public key never builds it.
//!
//! A signature is the one `p256`'s `SigningKey` makes: RFC 6979's deterministic nonce,
//! then `r = x(k·G) mod n` and `s = k⁻¹(z + r·d) mod n` as `ecdsa::hazmat` computes
//! them (the same bytes whichever way `k·G` is computed: tested). A crate of its own so
//! that a component can compile it for speed (the workspace's `component` profile).

use p256::elliptic_curve::{
    Curve as _, Field as _, PrimeField as _,
    ops::{Invert as _, Reduce},
    point::AffineCoordinates as _,
};
use p256::{FieldBytes, NistP256, NonZeroScalar, ProjectivePoint, PublicKey, Scalar};
use std::sync::atomic::{AtomicU32, Ordering};

/// Signatures an instance makes before `k·G` goes through [`comb`]'s table.
pub const GENERIC_SIGNATURES: u32 = 2;

/// Signatures this instance has made (a wasm instance is one thread; natively, the
/// count is the process's, which only moves when the table is built).
static SIGNATURES: AtomicU32 = AtomicU32::new(0);

/// Whether a signature made after `before` others in this instance computes `k·G`
/// with [`comb`]'s table (building it if it is not there yet).
pub fn with_table(before: u32) -> bool {
    before >= GENERIC_SIGNATURES
}

/// `k·G`: with [`comb`]'s table, or by `p256`'s generic multiplication.
fn times_generator(k: &Scalar, table: bool) -> ProjectivePoint {
    if table {
        comb::times_generator(k)
    } else {
        ProjectivePoint::GENERATOR * k
    }
}

/// The public key of the scalar `d`, by the generic multiplication (a key read in a
/// new instance does not build the table). `None` only for a point at infinity, which
/// a nonzero scalar below the order never gives.
pub fn public_key(d: &NonZeroScalar) -> Option<PublicKey> {
    PublicKey::from_affine(times_generator(d, false).to_affine()).ok()
}

/// The ES256 signature `r || s` of the SHA-256 digest `z` with the key `d`.
pub fn sign(d: &NonZeroScalar, z: &[u8; 32]) -> [u8; 64] {
    let table = with_table(SIGNATURES.fetch_add(1, Ordering::Relaxed));
    sign_with(d, z, table)
}

/// [`sign`], with `k·G` computed as `table` says.
fn sign_with(d: &NonZeroScalar, z: &[u8; 32], table: bool) -> [u8; 64] {
    let order = NistP256::ORDER;
    let mut nonces =
        rfc6979::KGenerator::<sha2::Sha256, p256::U256>::new(&d.to_repr(), z, &[], &order);
    loop {
        let mut k = FieldBytes::default();
        nonces.fill_next_k(&mut k);
        // A `k` that is zero, or gives `r` or `s` zero (probability about 2⁻²⁵⁶), is
        // followed by the generator's next one, as RFC 6979 §3.4 says.
        if let Some(k) = NonZeroScalar::from_repr(k).into_option()
            && let Some(signature) = signature(d, &k, z, table)
        {
            return signature;
        }
    }
}

/// `r || s` for the nonce `k`, or `None` when `r` or `s` is zero.
fn signature(d: &NonZeroScalar, k: &NonZeroScalar, z: &[u8; 32], table: bool) -> Option<[u8; 64]> {
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*z));
    let point = times_generator(k, table).to_affine();
    let r = <Scalar as Reduce<FieldBytes>>::reduce(&point.x());
    let s = *k.invert() * (z + r * d.as_ref());
    if bool::from(r.is_zero() | s.is_zero()) {
        return None;
    }
    let mut out = [0; 64];
    out[..32].copy_from_slice(&r.to_repr());
    out[32..].copy_from_slice(&s.to_repr());
    Some(out)
}

/// `k·G` from a table of multiples of `G` (a fixed-base comb): the scalar in 52 signed
/// radix-32 digits, each digit one mixed addition of a table point, chosen in constant
/// time. The table holds `m·32^(2j)·G` for `m` in 1..=16 and `j` in 0..26, affine (416
/// points, about 30 KB); the odd digits are summed apart and multiplied by 32 at the end
/// (five doublings), which halves the table. That is 58 point operations where `p256`'s
/// multiplication takes about 330, and `primeorder`'s basepoint table (`p256`'s
/// `precomputed-tables`) 70, with 50.8 KB of code to build it at `opt-level = 3`.
mod comb {
    use p256::elliptic_curve::PrimeField as _;
    use p256::elliptic_curve::group::{Curve as _, Group as _};
    use p256::elliptic_curve::subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
    use p256::{AffinePoint, ProjectivePoint, Scalar};
    use std::sync::OnceLock;

    /// Bits per digit.
    const W: usize = 5;
    /// Digits of a 256-bit scalar: 52 × 5 = 260 bits, room for the last carry.
    const DIGITS: usize = 52;
    /// Table points per window: `|digit|` is at most 16.
    const ENTRIES: usize = 16;
    /// Windows: one per pair of digits.
    const WINDOWS: usize = DIGITS / 2;

    type Table = [[AffinePoint; ENTRIES]; WINDOWS];

    /// Built on first use, on the heap (a static of its size would be in the
    /// component's initial memory).
    static TABLE: OnceLock<Box<Table>> = OnceLock::new();

    /// `k·G`, in constant time in `k`; the first call in an instance builds the table.
    pub(super) fn times_generator(k: &Scalar) -> ProjectivePoint {
        let table = TABLE.get_or_init(build);
        let digits = radix32(k);
        let (mut even, mut odd) = (ProjectivePoint::IDENTITY, ProjectivePoint::IDENTITY);
        for (j, window) in table.iter().enumerate() {
            even += select(window, digits[2 * j]);
            odd += select(window, digits[2 * j + 1]);
        }
        for _ in 0..W {
            odd = odd.double();
        }
        even + odd
    }

    /// `m·32^(2j)·G` at `[j][m - 1]`.
    fn build() -> Box<Table> {
        let mut points = Vec::with_capacity(WINDOWS * ENTRIES);
        let mut base = ProjectivePoint::GENERATOR;
        for _ in 0..WINDOWS {
            let mut multiple = base;
            for _ in 0..ENTRIES {
                points.push(multiple);
                multiple += base;
            }
            for _ in 0..2 * W {
                base = base.double();
            }
        }
        let mut affine = vec![AffinePoint::IDENTITY; points.len()];
        ProjectivePoint::batch_normalize(&points, &mut affine);
        let mut table = Box::new([[AffinePoint::IDENTITY; ENTRIES]; WINDOWS]);
        for (window, chunk) in table.iter_mut().zip(affine.chunks_exact(ENTRIES)) {
            window.copy_from_slice(chunk);
        }
        table
    }

    /// `digit·(the window's base)`, reading every entry (constant time in `digit`).
    fn select(window: &[AffinePoint; ENTRIES], digit: i8) -> AffinePoint {
        let sign = digit >> 7;
        let magnitude = ((digit ^ sign).wrapping_sub(sign)) as u8;
        let mut point = AffinePoint::IDENTITY;
        for (m, entry) in (1u8..).zip(window) {
            point.conditional_assign(entry, magnitude.ct_eq(&m));
        }
        let negative = Choice::from((sign & 1) as u8);
        point.conditional_assign(&-point, negative);
        point
    }

    /// `k` as `Σ digits[i]·32^i` with every digit in -16..=15, in constant time (the
    /// branches depend on the position only).
    pub(super) fn radix32(k: &Scalar) -> [i8; DIGITS] {
        let bytes = k.to_repr();
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let be: [u8; 8] = bytes[32 - 8 * (i + 1)..32 - 8 * i]
                .try_into()
                .unwrap_or([0; 8]);
            *limb = u64::from_be_bytes(be);
        }
        let mut digits = [0i8; DIGITS];
        let mut carry = 0u64;
        for (i, digit) in digits.iter_mut().enumerate() {
            let (limb, bit) = ((i * W) / 64, (i * W) % 64);
            let mut window = limbs.get(limb).map_or(0, |l| l >> bit);
            if bit + W > 64
                && let Some(next) = limbs.get(limb + 1)
            {
                window |= next << (64 - bit);
            }
            let value = carry + (window & 31);
            carry = (value + 16) >> W;
            *digit = (value as i64 - ((carry << W) as i64)) as i8;
        }
        digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn scalar(seed: u64) -> NonZeroScalar {
        let bytes = sha2::Sha256::digest(seed.to_be_bytes());
        NonZeroScalar::from_repr(bytes).unwrap()
    }

    #[test]
    fn the_table_is_built_for_an_instances_third_signature() {
        assert!(!with_table(0));
        assert!(!with_table(1));
        assert!(with_table(2));
        assert!(with_table(127));
        assert!(with_table(u32::MAX));
    }

    /// With the table and without it, the bytes `ecdsa::hazmat::sign_prehashed_rfc6979`
    /// makes (what `p256`'s `SigningKey` signs with), for keys and digests that vary.
    #[test]
    fn both_ways_sign_the_bytes_ecdsa_signs() {
        for seed in 0..64u64 {
            let d = scalar(seed);
            let z: [u8; 32] = sha2::Sha256::digest(seed.to_le_bytes()).into();
            let (reference, _) =
                ecdsa::hazmat::sign_prehashed_rfc6979::<NistP256, sha2::Sha256>(&d, &z, &[]);
            let reference: [u8; 64] = reference.to_bytes().into();
            assert_eq!(sign_with(&d, &z, false), reference, "seed {seed}");
            assert_eq!(sign_with(&d, &z, true), reference, "seed {seed}");
        }
        // A digest at or above the order (all ones) is reduced, as ECDSA says.
        let d = scalar(99);
        let z = [0xff; 32];
        let (reference, _) =
            ecdsa::hazmat::sign_prehashed_rfc6979::<NistP256, sha2::Sha256>(&d, &z, &[]);
        assert_eq!(
            sign_with(&d, &z, true),
            <[u8; 64]>::from(reference.to_bytes())
        );
    }

    /// The order minus `m`.
    fn minus(m: u64) -> Scalar {
        -Scalar::from(m)
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
                (ProjectivePoint::GENERATOR * k).to_affine(),
                "{k:?}"
            );
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

    #[test]
    fn a_public_key_is_the_one_p256_derives() {
        for seed in 0..16u64 {
            let d = scalar(seed);
            let secret = p256::SecretKey::from(d);
            assert_eq!(public_key(&d), Some(secret.public_key()), "seed {seed}");
        }
    }
}
