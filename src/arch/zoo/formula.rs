//! The zoo's size formulas: arithmetic over integers and config fields, as
//! generate.py writes them, evaluated in exact rational arithmetic as its
//! `evaluate` does. Most are sums of products and quotients
//! (`head_dim*num_key_value_heads`, `3*hidden_size/2`,
//! `image_size//patch_size*image_size//patch_size+1`); a size whose
//! library code the generator traced keeps that code's arithmetic
//! (traced.py: Parakeet's subsampling projection
//! `subsampling_conv_channels*(num_mel_bins//(subsampling_conv_stride**3))`,
//! a convolution's output length `(max_length-patch_size)//time_stride+1`).
//! The grammar, tightest first: a number, a field, a parenthesised formula
//! or `ceil_to(formula,M)`; `**` to a number up to 64; `//` (Python's floor
//! division) and `%` (its remainder), left to right; `*` and `/`, left to
//! right; `+` and `-`, left to right, with a leading `-`. `//` binds
//! tighter than `*`, unlike Python, so that `a//b*c//d` is a product of two
//! quotients; the generator parenthesises any other operand of `//`. A
//! size must come out a non-negative integer; anything else (a field of 0
//! under a division, an overflow, a fraction) is an error naming the
//! formula, never a wrong size. A size the library rounds is written
//! `ceil_to(formula,M)` (rounded_sizes.py: LFM2's feed-forward,
//! `int(2 * intermediate_size / 3)` rounded up to a multiple of 256, is
//! `ceil_to(2*intermediate_size/3,256)`): the inner formula floored, as
//! Python's `int()` floors it, then rounded up to a multiple of M.

use crate::error::{err, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Plus,
    Minus,
    Times,
    Over,
    /// Python's `//`: the quotient floored.
    Floor,
    /// Python's `%`: what `//` leaves, with the divisor's sign.
    Remainder,
    /// `**` to a number.
    Power,
}

#[derive(Debug)]
enum Node<'a> {
    Number(i128),
    Field(&'a str),
    Negated(Box<Node<'a>>),
    Binary(Operator, Box<Node<'a>>, Box<Node<'a>>),
    /// `ceil_to(inner,M)`: the inner value floored, then rounded up to a
    /// multiple of M.
    RoundedUp(Box<Node<'a>>, i128),
}

#[derive(Debug)]
pub struct Formula<'a> {
    text: &'a str,
    root: Node<'a>,
}

/// The function that rounds a size up, `ceil_to(` inner `,M)`.
const ROUNDED_UP: &str = "ceil_to";

/// Formulas are short; a longer one is not the generator's.
const MAX_FORMULA_BYTES: usize = 512;

/// Parentheses nest at most this deep (a hostile file's formula must not
/// recurse without bound).
const MAX_DEPTH: usize = 32;

/// The largest exponent `**` takes: a convolution stack's stride to its
/// depth; more is not a size.
const MAX_EXPONENT: i128 = 64;

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

/// A rational number, its denominator positive and the two coprime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rational {
    numerator: i128,
    denominator: i128,
}

impl Rational {
    fn whole(value: i128) -> Rational {
        Rational {
            numerator: value,
            denominator: 1,
        }
    }

    fn new<'a>(numerator: i128, denominator: i128) -> std::result::Result<Rational, Failure<'a>> {
        if denominator == 0 {
            return Err(Failure::DividesByZero);
        }
        let sign = if denominator < 0 { -1 } else { 1 };
        let common = gcd(numerator, denominator);
        Ok(Rational {
            numerator: (numerator / common)
                .checked_mul(sign)
                .ok_or(Failure::Overflow)?,
            denominator: (denominator / common)
                .checked_mul(sign)
                .ok_or(Failure::Overflow)?,
        })
    }

    fn negated<'a>(self) -> std::result::Result<Rational, Failure<'a>> {
        let numerator = self.numerator.checked_neg().ok_or(Failure::Overflow)?;
        Ok(Rational { numerator, ..self })
    }

    fn plus<'a>(self, other: Rational) -> std::result::Result<Rational, Failure<'a>> {
        let left = self.numerator.checked_mul(other.denominator);
        let right = other.numerator.checked_mul(self.denominator);
        let numerator = left
            .zip(right)
            .and_then(|(l, r)| l.checked_add(r))
            .ok_or(Failure::Overflow)?;
        let denominator = self
            .denominator
            .checked_mul(other.denominator)
            .ok_or(Failure::Overflow)?;
        Rational::new(numerator, denominator)
    }

    fn times<'a>(self, other: Rational) -> std::result::Result<Rational, Failure<'a>> {
        let numerator = self.numerator.checked_mul(other.numerator);
        let denominator = self.denominator.checked_mul(other.denominator);
        Rational::new(
            numerator.ok_or(Failure::Overflow)?,
            denominator.ok_or(Failure::Overflow)?,
        )
    }

    fn over<'a>(self, other: Rational) -> std::result::Result<Rational, Failure<'a>> {
        let numerator = self.numerator.checked_mul(other.denominator);
        let denominator = self.denominator.checked_mul(other.numerator);
        Rational::new(
            numerator.ok_or(Failure::Overflow)?,
            denominator.ok_or(Failure::Overflow)?,
        )
    }

    /// Python's floor of the value.
    fn floor(self) -> i128 {
        self.numerator.div_euclid(self.denominator)
    }
}

/// The formula's text read into nodes, tightest binding first.
struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.text[self.at..].starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Result<Node<'a>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bad(self.text, "parentheses nest too deep"));
        }
        let mut node = if self.eat("-") {
            Node::Negated(Box::new(self.product()?))
        } else {
            self.product()?
        };
        loop {
            let operator = if self.eat("+") {
                Operator::Plus
            } else if self.eat("-") {
                Operator::Minus
            } else {
                break;
            };
            node = Node::Binary(operator, Box::new(node), Box::new(self.product()?));
        }
        self.depth -= 1;
        Ok(node)
    }

    /// Operands joined left to right by any of `operators` (a level of the
    /// grammar: `*` and `/`, or `//` and `%`; the tighter level below has
    /// eaten every `//` and `**` before a `/` or `*` is tried here).
    fn left_to_right(
        &mut self,
        operators: &[(&str, Operator)],
        operand: fn(&mut Parser<'a>) -> Result<Node<'a>>,
    ) -> Result<Node<'a>> {
        let mut node = operand(self)?;
        while let Some(&(_, operator)) = operators.iter().find(|(token, _)| self.eat(token)) {
            node = Node::Binary(operator, Box::new(node), Box::new(operand(self)?));
        }
        Ok(node)
    }

    fn product(&mut self) -> Result<Node<'a>> {
        self.left_to_right(
            &[("*", Operator::Times), ("/", Operator::Over)],
            Parser::quotient,
        )
    }

    fn quotient(&mut self) -> Result<Node<'a>> {
        self.left_to_right(
            &[("//", Operator::Floor), ("%", Operator::Remainder)],
            Parser::power,
        )
    }

    fn power(&mut self) -> Result<Node<'a>> {
        let base = self.primary()?;
        if !self.eat("**") {
            return Ok(base);
        }
        match self.primary()? {
            Node::Number(exponent) if exponent <= MAX_EXPONENT => Ok(Node::Binary(
                Operator::Power,
                Box::new(base),
                Box::new(Node::Number(exponent)),
            )),
            _ => Err(bad(self.text, "`**` takes a number up to 64")),
        }
    }

    fn primary(&mut self) -> Result<Node<'a>> {
        let start = self.at;
        if self.eat("(") {
            let inner = self.sum()?;
            if !self.eat(")") {
                return Err(bad(self.text, "a `(` without its `)`"));
            }
            return Ok(inner);
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.at += 1;
        }
        let word = &self.text[start..self.at];
        if word.is_empty() {
            return Err(bad(self.text, "an empty factor"));
        }
        if word.bytes().all(|b| b.is_ascii_digit()) {
            return word
                .parse()
                .ok()
                .filter(|n: &i128| *n <= i128::from(u64::MAX))
                .map(Node::Number)
                .ok_or_else(|| bad(self.text, "a number too large"));
        }
        if word == ROUNDED_UP && self.eat("(") {
            let inner = self.sum()?;
            let multiple = self
                .eat(",")
                .then(|| self.primary().ok())
                .flatten()
                .filter(|_| self.eat(")"));
            return match multiple {
                Some(Node::Number(multiple)) if multiple > 0 => {
                    Ok(Node::RoundedUp(Box::new(inner), multiple))
                }
                _ => Err(bad(self.text, "ceil_to's multiple is no positive number")),
            };
        }
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(self.text, "a name that starts with a digit"));
        }
        Ok(Node::Field(word))
    }
}

impl<'a> Formula<'a> {
    pub fn parse(text: &'a str) -> Result<Formula<'a>> {
        if text.is_empty() || text.len() > MAX_FORMULA_BYTES {
            return Err(bad(text, "empty or too long"));
        }
        let mut parser = Parser {
            text,
            at: 0,
            depth: 0,
        };
        let root = parser.sum()?;
        if parser.at != text.len() {
            return Err(bad(text, &format!("unexpected {:?}", &text[parser.at..])));
        }
        Ok(Formula { text, root })
    }

    /// The config fields the formula reads, each once.
    pub fn fields(&self) -> Vec<&'a str> {
        fn gather<'a>(node: &Node<'a>, names: &mut Vec<&'a str>) {
            match node {
                Node::Number(_) => {}
                Node::Field(name) => {
                    if !names.contains(name) {
                        names.push(name);
                    }
                }
                Node::Negated(inner) | Node::RoundedUp(inner, _) => gather(inner, names),
                Node::Binary(_, left, right) => {
                    gather(left, names);
                    gather(right, names);
                }
            }
        }
        let mut names = Vec::new();
        gather(&self.root, &mut names);
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
        matches!(self.root, Node::RoundedUp(..))
    }

    /// A rounded size's inner formula, whole, unrounded: where it equals the
    /// rounded value the rounding does nothing (inference prefers such a
    /// value of a field among the many that round alike).
    pub fn unrounded_value_of(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> Option<u64> {
        let inner = match &self.root {
            Node::RoundedUp(inner, _) => inner,
            other => other,
        };
        size_of(value_of_node(inner, lookup).ok()?).ok()
    }

    fn value(&self, lookup: &dyn Fn(&str) -> Option<u64>) -> std::result::Result<u64, Failure<'a>> {
        size_of(value_of_node(&self.root, lookup)?)
    }
}

/// A value as a size: whole and not below zero.
fn size_of<'a>(value: Rational) -> std::result::Result<u64, Failure<'a>> {
    if value.numerator < 0 || value.denominator != 1 {
        return Err(Failure::NotASize(value.numerator, value.denominator));
    }
    u64::try_from(value.numerator).map_err(|_| Failure::Overflow)
}

fn value_of_node<'a>(
    node: &Node<'a>,
    lookup: &dyn Fn(&str) -> Option<u64>,
) -> std::result::Result<Rational, Failure<'a>> {
    match node {
        Node::Number(n) => Ok(Rational::whole(*n)),
        Node::Field(name) => lookup(name)
            .map(|v| Rational::whole(i128::from(v)))
            .ok_or(Failure::NoValue(name)),
        Node::Negated(inner) => value_of_node(inner, lookup)?.negated(),
        Node::RoundedUp(inner, multiple) => {
            let value = value_of_node(inner, lookup)?;
            if value.numerator < 0 {
                return Err(Failure::NotASize(value.numerator, value.denominator));
            }
            let rounded = value
                .floor()
                .checked_add(multiple - 1)
                .map(|up| up / multiple * multiple)
                .ok_or(Failure::Overflow)?;
            Ok(Rational::whole(rounded))
        }
        Node::Binary(operator, left, right) => {
            let a = value_of_node(left, lookup)?;
            let b = value_of_node(right, lookup)?;
            if b.numerator == 0
                && matches!(
                    operator,
                    Operator::Over | Operator::Floor | Operator::Remainder
                )
            {
                // A field of 0 under a division is named (a head count of 0).
                return Err(match **right {
                    Node::Field(name) => Failure::Zero(name),
                    _ => Failure::DividesByZero,
                });
            }
            match operator {
                Operator::Plus => a.plus(b),
                Operator::Minus => a.plus(b.negated()?),
                Operator::Times => a.times(b),
                Operator::Over => a.over(b),
                Operator::Floor => Ok(Rational::whole(a.over(b)?.floor())),
                // Python's remainder: a - b * (a // b).
                Operator::Remainder => {
                    let whole = Rational::whole(a.over(b)?.floor());
                    a.plus(b.times(whole)?.negated()?)
                }
                Operator::Power => {
                    let exponent = u32::try_from(b.numerator).map_err(|_| Failure::Overflow)?;
                    Rational::new(
                        a.numerator.checked_pow(exponent).ok_or(Failure::Overflow)?,
                        a.denominator
                            .checked_pow(exponent)
                            .ok_or(Failure::Overflow)?,
                    )
                }
            }
        }
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

    /// Sizes the generator read off the library's own arithmetic
    /// (traced.py) keep Python's meaning: floor division and remainder of
    /// whole or negative values, powers, parentheses; `//` binds tighter
    /// than `*`, so the generator parenthesises any other operand.
    #[test]
    fn traced_formulas_evaluate_as_python_does() {
        let fields = [
            ("channels", 256),
            ("mel", 80),
            ("stride", 2),
            ("length", 1024),
            ("patch", 16),
            ("time_stride", 10),
            ("frequency_stride", 10),
            ("depth", 3),
        ];
        let cases = [
            // Parakeet's subsampling projection: 256 * (80 // 8).
            ("channels*(mel//(stride**3))", 2560),
            ("channels*mel//(stride**3)", 2560),
            ("(channels*mel)//(stride**3)", 2560),
            // An audio spectrogram transformer's patches, plus two tokens.
            (
                "((mel-patch)//frequency_stride+1)*((length-patch)//time_stride+1)+2",
                7 * 101 + 2,
            ),
            // Floor of a negative quotient, then lifted: (3-16)//2 = -7.
            ("(depth-patch)//stride+8", 1),
            ("(depth-patch)%stride", 1),
            ("length%patch+mel%depth", 2),
            ("(-3)+depth", 0),
            ("-(depth-channels)", 253),
            ("stride**10", 1024),
            ("ceil_to(mel*2/3,64)", 64),
            ("ceil_to(mel,16)+1", 81),
        ];
        for (text, want) in cases {
            assert_eq!(value(text, &fields).expect(text), want, "{text}");
        }
        let zero = [("a", 5), ("b", 0)];
        let named = value("a%b", &zero).unwrap_err().to_string();
        assert!(named.contains("b is 0"), "{named}");
        assert!(value("a//(b*a)", &zero)
            .unwrap_err()
            .to_string()
            .contains("divides by 0"));
        for text in [
            "(a",
            "a)",
            "a**65",
            "a**(b)",
            "a b",
            "2a",
            "a+",
            "a**-1",
            "ceil_to(a)",
            &format!("{}a{}", "(".repeat(40), ")".repeat(40)),
        ] {
            assert!(Formula::parse(text).is_err(), "{text}");
        }
        let formula = Formula::parse("channels*(mel//(stride**3))+mel%depth").unwrap();
        assert_eq!(formula.fields(), ["channels", "mel", "stride", "depth"]);
        let huge = [("a", u64::MAX)];
        assert!(value("a**64", &huge).is_err());
        assert!(value("-a-a-a", &huge).is_err());
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
