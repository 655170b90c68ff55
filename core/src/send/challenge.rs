//! Whether a 401 blames the token (pure): RFC 6750 §3 has the resource server say why
//! in `WWW-Authenticate`, and only `error="invalid_token"` says the token itself is the
//! problem (expired, revoked, malformed). `insufficient_scope` or `invalid_request`, or
//! a challenge for another scheme only, says another token would be refused too, so
//! dropping the shared token would only make the fleet fetch again for nothing.
//!
//! A 401 that says nothing (no `WWW-Authenticate`, or a `Bearer` challenge without an
//! `error`) is common in practice; `renew_on_401` decides whether it blames the token.

use crate::oauth::dpop::TokenType;

/// `renew_on_401`: which 401s make the token be dropped and another one be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewOn401 {
    /// Only a `Bearer` challenge with `error="invalid_token"`.
    InvalidToken,
    /// That, and a 401 that gives no reason: no `WWW-Authenticate`, or a `Bearer`
    /// challenge without `error` (the default).
    Unexplained,
}

/// What the `WWW-Authenticate` values of a 401 say about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `Bearer error="invalid_token"`.
    InvalidToken,
    /// No reason given.
    Unexplained,
    /// Another reason (another error code, or no `Bearer` challenge at all).
    NotTheToken,
    /// `DPoP error="use_dpop_nonce"` (RFC 9449 §9): the proof lacked the nonce the
    /// server wants; the token is fine.
    UseDpopNonce,
}

impl RenewOn401 {
    /// The value of `renew_on_401` (one of `config::keys::RENEW_ON_401`).
    pub(crate) fn from_name(name: &str) -> Self {
        match name {
            "invalid_token" => RenewOn401::InvalidToken,
            _ => RenewOn401::Unexplained,
        }
    }

    /// Whether a 401 with these `WWW-Authenticate` values blames a Bearer token.
    pub fn blames<V: AsRef<[u8]>>(self, www_authenticate: &[V]) -> bool {
        self.blames_token(www_authenticate, TokenType::Bearer)
    }

    /// Whether a 401 with these `WWW-Authenticate` values blames a token of this type
    /// (the challenge of its own scheme: `Bearer`, or `DPoP` for a DPoP token).
    pub fn blames_token<V: AsRef<[u8]>>(self, www_authenticate: &[V], kind: TokenType) -> bool {
        match verdict(www_authenticate, kind) {
            Verdict::InvalidToken => true,
            Verdict::Unexplained => self == RenewOn401::Unexplained,
            Verdict::NotTheToken | Verdict::UseDpopNonce => false,
        }
    }
}

/// Whether a 401 asks for a DPoP nonce: `WWW-Authenticate: DPoP error="use_dpop_nonce"`
/// (the new nonce is in the response's `DPoP-Nonce`).
pub(crate) fn asks_for_dpop_nonce<V: AsRef<[u8]>>(www_authenticate: &[V]) -> bool {
    !www_authenticate.is_empty()
        && verdict(www_authenticate, TokenType::DPoP) == Verdict::UseDpopNonce
}

/// Read the challenges (RFC 9110 §11.6.1: `scheme [token68 | #auth-param]`, several per
/// value, comma-separated; several field lines are one list, RFC 9110 §5.3) for the
/// `error` of the one of `kind`'s scheme (`Bearer` or `DPoP`).
pub(crate) fn verdict<V: AsRef<[u8]>>(www_authenticate: &[V], kind: TokenType) -> Verdict {
    let own = kind.as_str().as_bytes();
    if www_authenticate.is_empty() {
        return Verdict::Unexplained;
    }
    let joined = www_authenticate
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(&b", "[..]);
    let (mut bearer, mut scheme_is_bearer) = (false, false);
    for item in Items::new(&joined) {
        match item {
            Item::Scheme(s) => {
                scheme_is_bearer = s.eq_ignore_ascii_case(own);
                bearer |= scheme_is_bearer;
            }
            Item::Param(name, value) if scheme_is_bearer && name.eq_ignore_ascii_case(b"error") => {
                return match &*value {
                    b"invalid_token" => Verdict::InvalidToken,
                    b"use_dpop_nonce" if kind == TokenType::DPoP => Verdict::UseDpopNonce,
                    _ => Verdict::NotTheToken,
                };
            }
            Item::Param(..) => {}
        }
    }
    if bearer {
        Verdict::Unexplained
    } else {
        Verdict::NotTheToken
    }
}

/// RFC 9110 §5.6.2 `token`: what a method or a header name is made of.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 `tchar`: what a token (a method, a header name, a scheme) is made of.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

enum Item<'a> {
    Scheme(&'a [u8]),
    /// A parameter and its value (a quoted one unescaped).
    Param(&'a [u8], std::borrow::Cow<'a, [u8]>),
}

/// The schemes and parameters of one header value, in order; a token68 is skipped.
struct Items<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Items<'a> {
    fn new(text: &'a [u8]) -> Self {
        Items { text, at: 0 }
    }

    fn skip(&mut self, what: &[u8]) {
        while self.at < self.text.len() && what.contains(&self.text[self.at]) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.at < self.text.len() && is_tchar(self.text[self.at]) {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    /// A quoted-string (RFC 9110 §5.6.4), without its quotes and escapes; an
    /// unterminated one runs to the end.
    fn quoted(&mut self) -> std::borrow::Cow<'a, [u8]> {
        self.at += 1;
        let start = self.at;
        while self.at < self.text.len() && self.text[self.at] != b'"' {
            self.at += if self.text[self.at] == b'\\' { 2 } else { 1 };
        }
        let end = self.at.min(self.text.len());
        self.at = end + 1;
        let raw = &self.text[start..end];
        if !raw.contains(&b'\\') {
            return raw.into();
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut bytes = raw.iter();
        while let Some(&b) = bytes.next() {
            out.push(if b == b'\\' {
                *bytes.next().unwrap_or(&b)
            } else {
                b
            });
        }
        out.into()
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            self.skip(b" \t,");
            if self.at >= self.text.len() {
                return None;
            }
            let word = self.token();
            if word.is_empty() {
                // Not a token (a stray character, or the rest of a token68): skip it.
                self.at += 1;
                continue;
            }
            self.skip(b" \t");
            if self.text.get(self.at) == Some(&b'=') {
                self.at += 1;
                self.skip(b" \t");
                let value = if self.text.get(self.at) == Some(&b'"') {
                    self.quoted()
                } else {
                    self.token().into()
                };
                return Some(Item::Param(word, value));
            }
            return Some(Item::Scheme(word));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(values: &[&str]) -> Verdict {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        verdict(&values, TokenType::Bearer)
    }

    #[test]
    fn only_invalid_token_blames_the_token_and_silence_is_unexplained() {
        use Verdict::*;
        for (values, expected) in [
            (&[][..], Unexplained),
            (&[r#"Bearer error="invalid_token""#][..], InvalidToken),
            (
                &[r#"Bearer realm="api", error="invalid_token", error_description="expired""#],
                InvalidToken,
            ),
            (&[r#"bearer ERROR=invalid_token"#], InvalidToken),
            (&[r#"Bearer realm="api""#], Unexplained),
            (&["Bearer"], Unexplained),
            (
                &[r#"Bearer error="insufficient_scope", scope="orders:write""#],
                NotTheToken,
            ),
            (&[r#"Bearer error="invalid_request""#], NotTheToken),
            (&[r#"Basic realm="api""#], NotTheToken),
            (&["Negotiate"], NotTheToken),
            // Several challenges in one value, or one per value.
            (
                &[r#"Basic realm="a", Bearer error="invalid_token""#],
                InvalidToken,
            ),
            (
                &[r#"Basic realm="a""#, r#"Bearer error="invalid_token""#],
                InvalidToken,
            ),
            // Another scheme's error says nothing about the Bearer token.
            (
                &[r#"DPoP error="invalid_token", Bearer realm="x""#],
                Unexplained,
            ),
            // A token68 before, a quoted comma, an escape: still read.
            (
                &[r#"Other abc==, Bearer realm="a, \"b\"", error="invalid_token""#],
                InvalidToken,
            ),
            (&[r#"Bearer error="invalid_token"#], InvalidToken),
            // An escaped character in a quoted value is the character.
            (&[r#"Bearer error="invalid\_token""#], InvalidToken),
            // An escaped quote is part of the value (here unterminated).
            (&[r#"Bearer error="invalid_token\""#], NotTheToken),
            // One challenge over two field lines (a list split anywhere).
            (
                &[r#"Bearer realm="x""#, r#"error="invalid_token""#],
                InvalidToken,
            ),
            (
                &[r#"Basic realm="x""#, r#"error="invalid_token""#],
                NotTheToken,
            ),
            (&["\u{0}\u{7f}=,,="], NotTheToken),
        ] {
            assert_eq!(says(values), expected, "{values:?}");
        }
    }

    /// Empty values, and values far larger than any host lets through, read in one pass
    /// without a panic.
    #[test]
    fn empty_and_oversized_values_are_read_without_a_panic() {
        assert_eq!(
            says(&[""]),
            Verdict::NotTheToken,
            "a value with no challenge"
        );
        assert_eq!(says(&["", ""]), Verdict::NotTheToken);
        let commas = ",".repeat(1 << 20);
        assert_eq!(says(&[&commas]), Verdict::NotTheToken);
        let open_quote = format!("Bearer realm=\"{}", "\\".repeat(1 << 19));
        assert_eq!(says(&[&open_quote]), Verdict::Unexplained);
        let many = format!("{}Bearer error=\"invalid_token\"", "x=y, ".repeat(1 << 17));
        assert_eq!(says(&[&many]), Verdict::InvalidToken);
    }

    #[test]
    fn renew_on_401_decides_what_an_unexplained_401_means() {
        let none: &[&[u8]] = &[];
        let scope: &[&[u8]] = &[br#"Bearer error="insufficient_scope""#];
        let invalid: &[&[u8]] = &[br#"Bearer error="invalid_token""#];
        assert!(RenewOn401::Unexplained.blames(none));
        assert!(!RenewOn401::InvalidToken.blames(none));
        for rule in [RenewOn401::Unexplained, RenewOn401::InvalidToken] {
            assert!(rule.blames(invalid));
            assert!(!rule.blames(scope));
        }
    }

    #[test]
    fn a_dpop_token_reads_the_dpop_challenge_and_its_nonce_request() {
        let dpop = |values: &[&str]| verdict(values, TokenType::DPoP);
        assert_eq!(
            dpop(&[r#"DPoP error="invalid_token", algs="ES256 PS256""#]),
            Verdict::InvalidToken
        );
        assert_eq!(
            dpop(&[r#"Bearer realm="x", DPoP error="use_dpop_nonce""#]),
            Verdict::UseDpopNonce
        );
        assert_eq!(dpop(&[r#"dpop algs="ES256""#]), Verdict::Unexplained);
        // The Bearer challenge's error says nothing of a DPoP token, nor the other way.
        assert_eq!(
            dpop(&[r#"Bearer error="invalid_token""#]),
            Verdict::NotTheToken
        );
        assert_eq!(
            verdict(&[r#"DPoP error="invalid_token""#], TokenType::Bearer),
            Verdict::NotTheToken
        );
        // A Bearer challenge cannot ask for a DPoP nonce.
        assert_eq!(
            verdict(&[r#"Bearer error="use_dpop_nonce""#], TokenType::Bearer),
            Verdict::NotTheToken
        );
        assert!(asks_for_dpop_nonce(&[br#"DPoP error="use_dpop_nonce""#]));
        assert!(!asks_for_dpop_nonce(&[br#"Bearer error="use_dpop_nonce""#]));
        let none: &[&[u8]] = &[];
        assert!(!asks_for_dpop_nonce(none));
        assert!(
            !RenewOn401::Unexplained
                .blames_token(&[br#"DPoP error="use_dpop_nonce""#], TokenType::DPoP)
        );
        assert!(
            RenewOn401::InvalidToken
                .blames_token(&[br#"DPoP error="invalid_token""#], TokenType::DPoP)
        );
    }
}
