//! `k·G` by a fixed-base comb: the scalar in 52 signed radix-32 digits, each one mixed
//! addition of a point from [`TABLE`](crate::table::TABLE), chosen in constant time.
//! The table holds `m·32^(2j)·G` for `m` in 1..=16 and `j` in 0..26, affine (416
//! points); the odd digits are summed apart and multiplied by 32 at the end (five
//! doublings and one addition), which halves the table. That is 52 mixed additions, 5
//! doublings and one addition, where `p256`'s generic multiplication takes about 330
//! point operations.

use crate::point::{Fe, Projective, element, words};
use crate::table::TABLE;
use p256::Scalar;
use p256::elliptic_curve::PrimeField as _;
use p256::elliptic_curve::subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
use primefield::bigint::Word;

/// Bits per digit.
pub(crate) const W: usize = 5;
/// Digits of a 256-bit scalar: 52 × 5 = 260 bits, room for the last carry.
pub(crate) const DIGITS: usize = 52;
/// Table points per window: `|digit|` is at most 16.
pub(crate) const ENTRIES: usize = 16;
/// Windows: one per pair of digits.
pub(crate) const WINDOWS: usize = DIGITS / 2;

/// One window of the table: `m·(its base)` at `[m - 1]`, as affine `[x, y]`.
pub(crate) type Window = [[Fe; 2]; ENTRIES];

/// `k·G`, in constant time in `k`.
pub(crate) fn times_generator(k: &Scalar) -> Projective {
    let digits = radix32(k);
    let (mut even, mut odd) = (Projective::IDENTITY, Projective::IDENTITY);
    for (j, window) in TABLE.iter().enumerate() {
        let (x, y, zero) = select(window, digits[2 * j]);
        even.add_affine(&x, &y, zero);
        let (x, y, zero) = select(window, digits[2 * j + 1]);
        odd.add_affine(&x, &y, zero);
    }
    for _ in 0..W {
        odd = odd.double();
    }
    even.add(&odd)
}

/// `digit·(the window's base)` as affine `(x, y)`, reading every entry (constant time
/// in `digit`), and whether `digit` is zero (then `(x, y)` is a point to add and
/// throw away: the identity has no affine coordinates).
fn select(window: &Window, digit: i8) -> (Fe, Fe, Choice) {
    let sign = digit >> 7;
    let magnitude = ((digit ^ sign).wrapping_sub(sign)) as u8;
    // Over the elements' Montgomery words, one mask per entry: `p256`'s own selection
    // works a limb at a time behind a barrier for each of the 32 elements.
    let (mut x, mut y) = (words(window[0][0]), words(window[0][1]));
    for (m, [entry_x, entry_y]) in (1u8..).zip(window) {
        let mask = Word::from(magnitude.ct_eq(&m).unwrap_u8()).wrapping_neg();
        for (to, from) in x.iter_mut().zip(words(*entry_x)) {
            *to ^= mask & (*to ^ from);
        }
        for (to, from) in y.iter_mut().zip(words(*entry_y)) {
            *to ^= mask & (*to ^ from);
        }
    }
    let (x, mut y) = (element(x), element(y));
    let negated = -y;
    y.conditional_assign(&negated, Choice::from((sign & 1) as u8));
    (x, y, magnitude.ct_eq(&0))
}

/// `k` as `Σ digits[i]·32^i` with every digit in -16..=15, in constant time (the
/// branches depend on the position only).
pub(crate) fn radix32(k: &Scalar) -> [i8; DIGITS] {
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
