//! The zoo's size formulas: a sum of terms, each a product and quotient of
//! integers, config fields and floor quotients of two fields
//! (`head_dim*num_key_value_heads`, `image_size//patch_size*image_size//patch_size+1`,
//! `3*hidden_size/2`), evaluated left to right in exact rational arithmetic
//! as generate.py's `evaluate` does. A size must come out a non-negative
//! integer; anything else (a field of 0 under a division, an overflow, a
//! fraction) is an error naming the formula, never a wrong size. A size
//! the library rounds is written `ceil_to(formula,M)` (rounded_sizes.py:
//! LFM2's feed-forward, `int(2 * intermediate_size / 3)` rounded up to a
//! multiple of 256, is `ceil_to(2*intermediate_size/3,256)`): the inner
//! formula floored, as Python's `int()` floors it, then rounded up to a
//! multiple of M.

use crate::error::{err, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom<'a> {
    Number(u64),
    Field(&'a str),
    /// `a//b`: Python's floor division of two fields.
    Floor(&'a str, &'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Times,
    Over,
}

#[derive(Debug)]
pub struct Formula<'a> {
    text: &'a str,
    /// `(negative, [(op, atom)])`; the first op of a term is `Times`.
    terms: Vec<(bool, Vec<(Op, Atom<'a>)>)>,
    /// `ceil_to(inner,M)`: the inner formula floored, then rounded up to a
    /// multiple of M.
    rounded_up_to: Option<u64>,
}

/// The wrapper of a rounded size, `ceil_to(` inner `,M)`.
const ROUNDED_UP: &str = "ceil_to(";

/// Formulas are short; a longer one is not the generator's.
const MAX_FORMULA_BYTES: usize = 512;

/// Why a formula gave no size, kept cheap until a message is wanted.
enum Failure<'a> {
    Overflow,
    NoValue(&'a str),
    Zero(&'a str),
    DividesByZero,
    NotASize(i128, i128),
}

fn bad(text: &str, why: &str) -> crate::error::Error {
    err(ErrorKind::BadConfig, format!("zoo formula {text:?}: {why}"))
}

fn atom<'a>(text: &'a str, whole: &str) -> Result<Atom<'a>> {
    if text.is_empty() {
        return Err(bad(whole, "an empty factor"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Atom::Number)
            .map_err(|_| bad(whole, "a number too large"));
    }
    if let Some((a, b)) = text.split_once("//") {
        if a.is_empty() || b.is_empty() {
            return Err(bad(whole, "a floor division without two fields"));
        }
        return Ok(Atom::Floor(a, b));
    }
    Ok(Atom::Field(text))
}

impl<'a> Formula<'a> {
    pub fn parse(text: &'a str) -> Result<Formula<'a>> {
        if text.is_empty() || text.len() > MAX_FORMULA_BYTES {
            return Err(bad(text, "empty or too long"));
        }
        let mut rounded_up_to = None;
        let mut rest = text;
        if let Some(wrapped) = text.strip_prefix(ROUNDED_UP) {
            let (inner, multiple) = wrapped
                .strip_suffix(')')
                .and_then(|body| body.rsplit_once(','))
                .ok_or_else(|| bad(text, "a ceil_to( without its ,M)"))?;
            let multiple: u64 = multiple
                .parse()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| bad(text, "ceil_to's multiple is no positive number"))?;
            if inner.is_empty() {
                return Err(bad(text, "ceil_to of nothing"));
            }
            rounded_up_to = Some(multiple);
            rest = inner;
        }
        let mut terms = Vec::new();
        let mut negative = false;
        if let Some(stripped) = rest.strip_prefix('-') {
            negative = true;
            rest = stripped;
        }
        loop {
            let end = rest.find(['+', '-']).unwrap_or(rest.len());
            let term = &rest[..end];
            let mut factors = Vec::new();
            let mut op = Op::Times;
            let mut start = 0;
            let bytes = term.as_bytes();
            let mut at = 0;
            while at < bytes.len() {
                let is_floor = bytes[at] == b'/' && bytes.get(at + 1) == Some(&b'/');
                if is_floor {
                    at += 2;
                    continue;
                }
                if bytes[at] == b'*' || bytes[at] == b'/' {
                    factors.push((op, atom(&term[start..at], text)?));
                    op = if bytes[at] == b'*' {
                        Op::Times
                    } else {
                        Op::Over
                    };
                    start = at + 1;
                }
                at += 1;
            }
            factors.push((op, atom(&term[start..], text)?));
            terms.push((negative, factors));
            if end == rest.len() {
                break;
            }
            negative = rest.as_bytes()[end] == b'-';
            rest = &rest[end + 1..];
        }
        Ok(Formula {
            text,
            terms,
            rounded_up_to,
        })
    }

    /// The config fields the formula reads, each once.
    pub fn fields(&self) -> Vec<&'a str> {
        let mut names = Vec::new();
        for (_, factors) in &self.terms {
            for (_, atom) in factors {
                let found = match *atom {
                    Atom::Number(_) => [None, None],
                    Atom::Field(name) => [Some(name), None],
                    Atom::Floor(a, b) => [Some(a), Some(b)],
                };
                for name in found.into_iter().flatten() {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    /// The formula's value; `lookup` gives each field's value.
    pub fn evaluate(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Result<u64> {
        self.explained(self.value(lookup))
    }

    /// A layer count's value: a whole number below 0 is 0 layers, as
    /// Python's `range(n)` gives none (SAM's IoU head builds
    /// `iou_head_depth - 2` hidden layers, none at a depth of 1).
    pub fn evaluate_count(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Result<u64> {
        match self.value(lookup) {
            Err(Failure::NotASize(numerator, 1)) if numerator < 0 => Ok(0),
            other => self.explained(other),
        }
    }

    fn explained(&self, value: std::result::Result<u64, Failure<'a>>) -> Result<u64> {
        value.map_err(|failure| {
            let why = match failure {
                Failure::Overflow => "overflows".to_string(),
                Failure::NoValue(name) => format!("no value for {name:?}"),
                Failure::Zero(name) => format!("{name} is 0"),
                Failure::DividesByZero => "divides by 0".to_string(),
                Failure::NotASize(numerator, denominator) => {
                    format!("gives {numerator}/{denominator}, not a size")
                }
            };
            bad(self.text, &why)
        })
    }

    /// The formula's value, or None: for solvers that try many values and
    /// need no message for those that give no size.
    pub fn value_of(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        self.value(lookup).ok()
    }

    /// Whether the formula is a size the library rounds (`ceil_to(..)`).
    pub fn is_rounded(&self) -> bool {
        self.rounded_up_to.is_some()
    }

    /// A rounded size's inner formula, whole, unrounded: where it equals the
    /// rounded value the rounding does nothing (inference prefers such a
    /// value of a field among the many that round alike).
    pub fn unrounded_value_of(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        self.value_rounded_to(lookup, None).ok()
    }

    fn value(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> std::result::Result<u64, Failure<'a>> {
        self.value_rounded_to(lookup, self.rounded_up_to)
    }

    /// The value, rounded up to `rounded_up_to` where given, else whole.
    fn value_rounded_to(
        &self,
        lookup: &dyn Fn(&str) -> Option<u64>,
        rounded_up_to: Option<u64>,
    ) -> std::result::Result<u64, Failure<'a>> {
        let overflow = || Failure::Overflow;
        let field = |name: &'a str| -> std::result::Result<i128, Failure<'a>> {
            lookup(name).map(i128::from).ok_or(Failure::NoValue(name))
        };
        // Sum as a fraction total_numerator / total_denominator.
        let (mut sum_numerator, mut sum_denominator) = (0i128, 1i128);
        for (negative, factors) in &self.terms {
            let (mut numerator, mut denominator) = (1i128, 1i128);
            for (op, atom) in factors {
                let value = match atom {
                    Atom::Number(n) => i128::from(*n),
                    Atom::Field(name) => field(name)?,
                    Atom::Floor(a, b) => {
                        let divisor = field(b)?;
                        if divisor == 0 {
                            return Err(Failure::Zero(b));
                        }
                        field(a)? / divisor
                    }
                };
                match op {
                    Op::Times => numerator = numerator.checked_mul(value).ok_or_else(overflow)?,
                    Op::Over => {
                        if value == 0 {
                            return Err(Failure::DividesByZero);
                        }
                        denominator = denominator.checked_mul(value).ok_or_else(overflow)?;
                    }
                }
                let common = gcd(numerator, denominator);
                numerator /= common;
                denominator /= common;
            }
            if *negative {
                numerator = -numerator;
            }
            sum_numerator = sum_numerator
                .checked_mul(denominator)
                .and_then(|a| {
                    numerator
                        .checked_mul(sum_denominator)
                        .and_then(|b| a.checked_add(b))
                })
                .ok_or_else(overflow)?;
            sum_denominator = sum_denominator
                .checked_mul(denominator)
                .ok_or_else(overflow)?;
            let common = gcd(sum_numerator, sum_denominator);
            sum_numerator /= common;
            sum_denominator /= common;
        }
        if sum_numerator < 0 {
            return Err(Failure::NotASize(sum_numerator, sum_denominator));
        }
        if let Some(multiple) = rounded_up_to.map(i128::from) {
            // The denominator is positive: the quotient floors.
            let floored = sum_numerator / sum_denominator;
            let rounded = floored
                .checked_add(multiple - 1)
                .map(|up| up / multiple * multiple)
                .ok_or_else(overflow)?;
            return u64::try_from(rounded).map_err(|_| overflow());
        }
        if sum_denominator != 1 {
            return Err(Failure::NotASize(sum_numerator, sum_denominator));
        }
        u64::try_from(sum_numerator).map_err(|_| overflow())
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    i128::try_from(a.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, fields: &[(&str, u64)]) -> Result<u64> {
        Formula::parse(text)?
            .evaluate(&|name| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    #[test]
    fn formulas_evaluate_as_the_generator_writes_them() {
        let fields = [
            ("hidden", 4096),
            ("heads", 32),
            ("kv", 8),
            ("image", 224),
            ("patch", 32),
        ];
        let cases = [
            ("hidden", 4096),
            ("3*hidden", 12288),
            ("hidden/heads*kv", 1024),
            ("1*hidden/2", 2048),
            ("image//patch*image//patch+1", 50),
            ("hidden+2*kv-1", 4111),
            ("-1+hidden", 4095),
            ("7", 7),
        ];
        for (text, want) in cases {
            assert_eq!(value(text, &fields).expect(text), want, "{text}");
        }
        let floor = [("image", 112), ("patch", 32)];
        assert_eq!(value("image//patch*image//patch+1", &floor).unwrap(), 10);
    }

    /// SAM's IoU head builds `range(iou_head_depth - 2)` hidden layers:
    /// none at a depth of 1, as a count; as a size, -1 is refused.
    #[test]
    fn a_count_below_zero_is_no_layers_and_a_size_below_zero_no_size() {
        let lookup = |depth: u64| move |name: &str| (name == "depth").then_some(depth);
        let formula = Formula::parse("depth-2").unwrap();
        for (depth, layers) in [(1, 0), (2, 0), (3, 1), (5, 3)] {
            assert_eq!(formula.evaluate_count(&lookup(depth)).unwrap(), layers);
        }
        let refused = formula.evaluate(&lookup(1)).unwrap_err().to_string();
        assert!(refused.contains("-1"), "{refused}");
        // A fraction below zero is no count either.
        let half = Formula::parse("depth/2-2").unwrap();
        assert!(half.evaluate_count(&lookup(1)).is_err());
    }

    /// LFM2's feed-forward: `int(2 * intermediate_size / 3)` rounded up to
    /// a multiple of 256, as transformers' Lfm2MLP computes it.
    #[test]
    fn a_rounded_size_floors_its_formula_then_rounds_up() {
        let text = "ceil_to(2*intermediate_size/3,256)";
        for (intermediate_size, rows) in [
            (12288, 8192),
            (6656, 4608),
            (48, 256),
            (10752, 7168),
            (49, 256),
        ] {
            let fields = [("intermediate_size", intermediate_size)];
            assert_eq!(
                value(text, &fields).expect(text),
                rows,
                "{intermediate_size}"
            );
        }
        let formula = Formula::parse(text).unwrap();
        assert!(formula.is_rounded());
        let at = |x: u64| move |name: &str| (name == "intermediate_size").then_some(x);
        assert_eq!(formula.unrounded_value_of(&at(6912)), Some(4608));
        assert_eq!(formula.unrounded_value_of(&at(6656)), None);
        assert_eq!(formula.unrounded_value_of(&at(48)), Some(32));
        assert!(!Formula::parse("2*intermediate_size/3")
            .unwrap()
            .is_rounded());
        for text in [
            "ceil_to(2*i/3,0)",
            "ceil_to(2*i/3)",
            "ceil_to(,8)",
            "ceil_to(2*i/3,x)",
            "ceil_to(i-9,8)",
        ] {
            assert!(value(text, &[("i", 6)]).is_err(), "{text}");
        }
    }

    #[test]
    fn a_formula_that_is_not_a_size_is_an_error() {
        let fields = [("hidden", 100), ("heads", 3), ("zero", 0)];
        for text in [
            "hidden/heads",
            "hidden/zero",
            "hidden//zero",
            "zero-1",
            "",
            "a**b",
            "missing",
        ] {
            let error = value(text, &fields).expect_err(text);
            assert_eq!(error.kind, ErrorKind::BadConfig, "{text}");
        }
        let huge = [("a", u64::MAX), ("b", u64::MAX)];
        assert!(value("a*b*a*b", &huge).is_err());
    }
}
