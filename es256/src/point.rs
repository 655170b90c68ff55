//! Points of P-256 in projective coordinates `(X : Y : Z)`, over `p256`'s field, with
//! the complete formulas of Renes, Costello and Batina for `a = -3`
//! (<https://eprint.iacr.org/2015/1060>, algorithms 4, 5 and 6; the ones `primeorder`
//! implements for `p256`'s own points). Complete: no input is a special case (the
//! identity, a point added to itself or to its negation), so no branch and no
//! exception depends on a secret; only the affine point of a mixed addition cannot be
//! the identity (it has no affine coordinates), which `add_affine`'s `skip` stands in
//! for.
//!
//! They are here, not taken from `p256`'s `ProjectivePoint`, because the comb's table
//! is a `static` of field elements: a `p256` `AffinePoint` cannot be made from field
//! elements without checking the curve equation, which would cost more than the
//! addition it feeds.

use p256::NistP256;
use p256::elliptic_curve::hazmat::FieldArithmetic;
use p256::elliptic_curve::subtle::{Choice, ConditionallySelectable as _};
use primefield::bigint::Word;
use primefield::{MontyFieldElement, MontyFieldParams};

/// An element of P-256's base field (`p256`'s, in Montgomery form).
pub(crate) type Fe = <NistP256 as FieldArithmetic>::FieldElement;

/// An element's Montgomery words (a move: `p256`'s element is its `primefield`
/// element, whose form is the words), so that the comb's table selection can mask
/// words: `p256`'s own selection works a limb at a time behind a barrier for each
/// element.
pub(crate) fn words<P: MontyFieldParams<L>, const L: usize>(fe: Fe) -> [Word; L]
where
    MontyFieldElement<P, L>: From<Fe>,
{
    MontyFieldElement::<P, L>::from(fe).to_montgomery_words()
}

/// The element of Montgomery words that [`words`] gave (a move back).
pub(crate) fn element<P: MontyFieldParams<L>, const L: usize>(words: [Word; L]) -> Fe
where
    Fe: From<MontyFieldElement<P, L>>,
{
    Fe::from(MontyFieldElement::<P, L>::from_montgomery_words(words))
}

/// The curve's `b` (SEC 2 §2.4.2).
const B: Fe =
    Fe::from_hex_vartime("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");

/// A point in projective coordinates; `Z = 0` is the identity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Projective {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Projective {
    pub(crate) const IDENTITY: Self = Self {
        x: Fe::ZERO,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    /// The affine point `(x, y)`, which must be on the curve.
    #[cfg(test)]
    pub(crate) fn from_affine(x: Fe, y: Fe) -> Self {
        Self { x, y, z: Fe::ONE }
    }

    /// `self + (x2, y2)` for an affine point `(x2, y2)` on the curve (algorithm 5),
    /// or `self` unchanged when `skip` is set, in constant time either way.
    pub(crate) fn add_affine(&mut self, x2: &Fe, y2: &Fe, skip: Choice) {
        let (x1, y1, z1) = (self.x, self.y, self.z);
        let xx = x1 * x2;
        let yy = y1 * y2;
        let xy_pairs = ((x1 + y1) * (*x2 + y2)) - (xx + yy);
        let yz_pairs = (*y2 * z1) + y1;
        let xz_pairs = (*x2 * z1) + x1;
        let bz_part = xz_pairs - (B * z1);
        let bz3_part = bz_part.double() + bz_part;
        let yy_m_bzz3 = yy - bz3_part;
        let yy_p_bzz3 = yy + bz3_part;
        let z3 = z1.double() + z1;
        let bxz_part = (B * xz_pairs) - (z3 + xx);
        let bxz3_part = bxz_part.double() + bxz_part;
        let xx3_m_zz3 = xx.double() + xx - z3;
        let x = (yy_p_bzz3 * xy_pairs) - (yz_pairs * bxz3_part);
        let y = (yy_p_bzz3 * yy_m_bzz3) + (xx3_m_zz3 * bxz3_part);
        let z = (yy_m_bzz3 * yz_pairs) + (xy_pairs * xx3_m_zz3);
        self.x = Fe::conditional_select(&x, &x1, skip);
        self.y = Fe::conditional_select(&y, &y1, skip);
        self.z = Fe::conditional_select(&z, &z1, skip);
    }

    /// `self + other` (algorithm 4).
    pub(crate) fn add(&self, other: &Self) -> Self {
        let (a, b) = (self, other);
        let xx = a.x * b.x;
        let yy = a.y * b.y;
        let zz = a.z * b.z;
        let xy_pairs = ((a.x + a.y) * (b.x + b.y)) - (xx + yy);
        let yz_pairs = ((a.y + a.z) * (b.y + b.z)) - (yy + zz);
        let xz_pairs = ((a.x + a.z) * (b.x + b.z)) - (xx + zz);
        let bzz_part = xz_pairs - (B * zz);
        let bzz3_part = bzz_part.double() + bzz_part;
        let yy_m_bzz3 = yy - bzz3_part;
        let yy_p_bzz3 = yy + bzz3_part;
        let zz3 = zz.double() + zz;
        let bxz_part = (B * xz_pairs) - (zz3 + xx);
        let bxz3_part = bxz_part.double() + bxz_part;
        let xx3_m_zz3 = xx.double() + xx - zz3;
        Self {
            x: (yy_p_bzz3 * xy_pairs) - (yz_pairs * bxz3_part),
            y: (yy_p_bzz3 * yy_m_bzz3) + (xx3_m_zz3 * bxz3_part),
            z: (yy_m_bzz3 * yz_pairs) + (xy_pairs * xx3_m_zz3),
        }
    }

    /// `2·self` (algorithm 6).
    pub(crate) fn double(&self) -> Self {
        let xx = self.x.square();
        let yy = self.y.square();
        let zz = self.z.square();
        let xy2 = (self.x * self.y).double();
        let xz2 = (self.x * self.z).double();
        let bzz_part = (B * zz) - xz2;
        let bzz3_part = bzz_part.double() + bzz_part;
        let yy_m_bzz3 = yy - bzz3_part;
        let yy_p_bzz3 = yy + bzz3_part;
        let y_frag = yy_p_bzz3 * yy_m_bzz3;
        let x_frag = yy_m_bzz3 * xy2;
        let zz3 = zz.double() + zz;
        let bxz2_part = (B * xz2) - (zz3 + xx);
        let bxz6_part = bxz2_part.double() + bxz2_part;
        let xx3_m_zz3 = xx.double() + xx - zz3;
        let y = y_frag + (xx3_m_zz3 * bxz6_part);
        let yz2 = (self.y * self.z).double();
        let x = x_frag - (bxz6_part * yz2);
        let z = (yz2 * yy).double().double();
        Self { x, y, z }
    }

    /// The affine coordinates `(x, y)`; `None` for the identity. One inversion, in
    /// constant time.
    pub(crate) fn to_affine(self) -> Option<(Fe, Fe)> {
        let inverse = Option::<Fe>::from(self.z.invert())?;
        Some((self.x * inverse, self.y * inverse))
    }
}
