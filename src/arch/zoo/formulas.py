"""Formulas for generate.py: a size or count of a model as a function of
config fields, found by search over sums of at most two products of fields
and a constant (small integer powers, floor quotients as atoms), then of
three products of at most two fields (a Mamba-2 mixer's input projection,
`2*mamba_expand*hidden_size+2*mamba_n_groups*mamba_d_state+mamba_n_heads`),
and kept only when it
reproduces every sample exactly, with at least one distinct sample more
than it has coefficients; `evaluate` is the Python twin of the Rust
evaluator (src/arch/zoo/formula.rs)."""

import functools
import itertools
import re
from fractions import Fraction

MAX_FIELDS_PER_SLOT = 5

# The three-product search tries this many of the simplest products (plain
# fields, their squares and products of two): at five fields that is all
# 20 of them, 2,280 bases with and without a constant.
THREE_TERM_PRODUCTS = 40


# The wrapper of a size the library rounds up to a multiple (formula.rs).
CEIL_TO = "ceil_to("


class Misfit(Exception):
    """A model the description cannot follow, with why."""


def monomials(fields):
    """Products of at most three of the fields, each to a power in -2..2,
    total degree at most 4; simplest first (fewer divisions, lower degree,
    fewer fields)."""
    found = []
    for count in (1, 2, 3):
        for chosen in itertools.combinations(fields, count):
            for exps in itertools.product((-2, -1, 1, 2), repeat=count):
                if sum(abs(e) for e in exps) <= 4:
                    found.append(tuple(zip(chosen, exps)))
    found.sort(key=lambda m: (sum(1 for _, e in m if e < 0), sum(abs(e) for _, e in m), len(m)))
    return found


def mono_value(m, env):
    v = Fraction(1)
    for f, e in m:
        x = env.get(f)
        if x is None or x == 0 and e < 0:
            return None
        v *= Fraction(x) ** e
    return v


def solve(rows, values):
    """Exact least-norm-free solve: the unique solution using independent rows, or None."""
    k = len(rows[0])
    chosen, chosen_vals = [], []
    for r, v in zip(rows, values):
        trial = chosen + [r]
        if rank(trial) == len(trial):
            chosen, chosen_vals = trial, chosen_vals + [v]
        if len(chosen) == k:
            break
    if len(chosen) < k:
        return None
    # Gaussian elimination.
    m = [list(r) + [v] for r, v in zip(chosen, chosen_vals)]
    for c in range(k):
        p = next(i for i in range(c, k) if m[i][c] != 0)
        m[c], m[p] = m[p], m[c]
        for i in range(k):
            if i != c and m[i][c] != 0:
                f = m[i][c] / m[c][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[c])]
    return [m[i][k] / m[i][i] for i in range(k)]


def rank(rows):
    m = [list(r) for r in rows]
    r = 0
    cols = len(m[0]) if m else 0
    for c in range(cols):
        p = next((i for i in range(r, len(m)) if m[i][c] != 0), None)
        if p is None:
            continue
        m[r], m[p] = m[p], m[r]
        for i in range(len(m)):
            if i != r and m[i][c] != 0:
                f = m[i][c] / m[r][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[r])]
        r += 1
    return r


def fit(points, fields):
    """points: [(env, value)]. Returns an expression string or None: plain
    fields first, then with floor quotients `a//b` as atoms (Python's
    `image_size // patch_size`)."""
    values = [Fraction(v) for _, v in points]
    if len(set(values)) == 1:
        return str(int(values[0]))
    if not fields or len(fields) > MAX_FIELDS_PER_SLOT:
        return None
    fields = sorted(fields)
    found = fit_over(points, values, fields)
    if found is None and len(fields) >= 2:
        quotients = [f"{a}//{b}" for a, b in itertools.permutations(fields, 2)]
        found = fit_over(points, values, quotients + fields)
    if found is None and len(fields) >= 3:
        # Tried last, so that every size a simpler formula fits keeps it.
        found = fit_over(points, values, fields, three_terms=True)
    return found


def atom_value(atom, env):
    if "//" in atom:
        a, b = atom.split("//")
        x, y = env.get(a), env.get(b)
        if x is None or not y:
            return None
        return Fraction(x // y)
    x = env.get(atom)
    return None if x is None else Fraction(x)


def fit_over(points, values, atoms, three_terms=False):
    monos = monomials(atoms)[:400]
    if three_terms:
        # Three products of at most two fields each, with and without a
        # constant: sizes made of three parts (an input projection that
        # holds the gate, the convolution's channels and one value per head).
        simple = [m for m in monos if all(e > 0 for _, e in m) and sum(e for _, e in m) <= 2]
        simple = simple[:THREE_TERM_PRODUCTS]
        bases = [(a, b, c) for a, b, c in itertools.combinations(simple, 3)]
        bases += [(a, b, c, ()) for a, b, c in itertools.combinations(simple, 3)]
    else:
        bases = [(m,) for m in monos] + [(m, ()) for m in monos] + [(a, b) for a, b in itertools.combinations(monos[:120], 2)]
        # Two products and a constant (a window's `(2*window_size-1)**2` is
        # `4*window_size**2-4*window_size+1`), tried last.
        bases += [(a, b, ()) for a, b in itertools.combinations(monos[:40], 2)]
    table = {}
    for m in monos:
        row = []
        for env, _ in points:
            v = Fraction(1)
            for f, e in m:
                x = atom_value(f, env)
                if x is None or (x == 0 and e < 0):
                    v = None
                    break
                v *= x ** e
            if v is None:
                break
            row.append(v)
        else:
            table[m] = row
    table[()] = [Fraction(1)] * len(points)
    seen = {a: len({atom_value(a, env) for env, _ in points}) for a in atoms}
    for basis in bases:
        if any(m not in table for m in basis):
            continue
        rows = [[table[m][i] for m in basis] for i in range(len(points))]
        if not confirmed(basis, rows, seen):
            continue
        coefs = solve(rows, values)
        if coefs is None or any(c == 0 for c in coefs):
            continue
        if all(sum(c * x for c, x in zip(coefs, row)) == v for row, v in zip(rows, values)):
            return render(basis, coefs)
    return None


def confirmed(basis, rows, seen):
    """Whether the samples pin a formula of this basis down, so that its
    fit says something: one distinct sample more than coefficients, and
    each field seen at more values than it has powers in the basis (a
    missing factor is power 0). Fewer fit whatever the values: a window
    seen at 7 and 14 only fits `80*window_size-391` as well as
    `(2*window_size-1)**2`, and Falcon's heads seen at 71 and 142 fit
    `74*hidden_size/71-hidden_size*num_attention_heads/5041` as well as
    `hidden_size+2*hidden_size/num_attention_heads`."""
    if len({tuple(r) for r in rows}) <= len(basis):
        return False
    for atom in {f for m in basis for f, _ in m}:
        powers = {dict(m).get(atom, 0) for m in basis}
        if seen.get(atom, 0) <= len(powers):
            return False
    return True


def render(basis, coefs):
    terms = []
    for m, c in zip(basis, coefs):
        positive = [f for f, e in m for _ in range(e) if e > 0]
        parts = [str(c.numerator)] if (c.numerator != 1 or not positive) else []
        parts.extend(positive)
        text = "*".join(parts)
        for f, e in m:
            if e < 0:
                text += "/" + "/".join([f] * -e)
        if c.denominator != 1:
            text += f"/{c.denominator}"
        terms.append(text)
    return "+".join(terms).replace("+-", "-")


def rounded_up(expr):
    """(inner formula, multiple) for a size the library rounds,
    `ceil_to(2*intermediate_size/3,256)` (rounded_sizes.py), else None."""
    if expr.startswith(CEIL_TO) and expr.endswith(")") and "," in expr:
        inner, multiple = expr[len(CEIL_TO):-1].rsplit(",", 1)
        if inner and multiple.isdigit() and int(multiple) > 0:
            return inner, int(multiple)
    return None


# A formula's tokens: `**` and `//` before `*` and `/`; a name may hold
# dots and digits (`image_size.0`, `vision_config.hidden_size`).
TOKEN = re.compile(r"\*\*|//|[-+*/%(),]|\d+|[A-Za-z_][\w.]*")
NAME = re.compile(r"[A-Za-z_][\w.]*")
OPERATORS = {")", ",", "+", "-", "*", "/", "//", "%", "**"}


@functools.lru_cache(maxsize=None)
def parse(expr):
    """The formula as a tree of tuples, with the grammar of the Rust
    evaluator (zoo/formula.rs), tightest first: a number, a field, a
    parenthesised formula or `ceil_to(formula,M)`; `**` to a number up to
    64; `//` and `%`, left to right; `*` and `/`; `+` and `-`, with a
    leading `-`. `//` binds tighter than `*`, unlike Python: `a//b*c//d`
    is a product of two quotients (traced.py parenthesises any other
    operand of `//`)."""
    tokens = TOKEN.findall(expr)
    if "".join(tokens) != expr:
        raise Misfit(f"formula {expr!r} has characters outside the grammar")
    at = [0]

    def peek():
        return tokens[at[0]] if at[0] < len(tokens) else None

    def take(*wanted):
        if peek() in wanted:
            at[0] += 1
            return tokens[at[0] - 1]
        return None

    def total():
        node = ("neg", product()) if take("-") else product()
        while (op := take("+", "-")) is not None:
            node = (op, node, product())
        return node

    def product():
        node = quotient()
        while (op := take("*", "/")) is not None:
            node = (op, node, quotient())
        return node

    def quotient():
        node = power()
        while (op := take("//", "%")) is not None:
            node = (op, node, power())
        return node

    def power():
        node = primary()
        if take("**"):
            exponent = primary()
            if exponent[0] != "num" or exponent[1] > 64:
                raise Misfit(f"formula {expr!r}: `**` takes a number up to 64")
            node = ("**", node, exponent)
        return node

    def primary():
        token = peek()
        if token is None or token in OPERATORS:
            raise Misfit(f"formula {expr!r}: an empty factor")
        at[0] += 1
        if token == "(":
            node = total()
            if not take(")"):
                raise Misfit(f"formula {expr!r}: a `(` without its `)`")
            return node
        if token.isdigit():
            return ("num", int(token))
        if token == "ceil_to" and take("("):
            inner = total()
            multiple = take(",") and primary()
            if not multiple or multiple[0] != "num" or multiple[1] <= 0 or not take(")"):
                raise Misfit(f"formula {expr!r}: ceil_to's multiple is no positive number")
            return ("ceil_to", inner, multiple[1])
        return ("field", token)

    node = total()
    if at[0] != len(tokens):
        raise Misfit(f"formula {expr!r}: unexpected {''.join(tokens[at[0]:])!r}")
    return node


def evaluate(expr, env):
    """The Python twin of the Rust evaluator (zoo/formula.rs), for
    self-checks: exact rationals, `//` floored as Python floors it. A
    rounded size is its inner formula floored (Python's `int()` of a
    positive quotient) and rounded up to its multiple."""
    return value_of(parse(expr), env)


def value_of(node, env):
    kind = node[0]
    if kind == "num":
        return Fraction(node[1])
    if kind == "field":
        return Fraction(env[node[1]])
    if kind == "neg":
        return -value_of(node[1], env)
    if kind == "ceil_to":
        inner = value_of(node[1], env)
        if inner < 0:
            return inner
        floored = inner.numerator // inner.denominator
        return Fraction(-(-floored // node[2]) * node[2])
    a, b = value_of(node[1], env), value_of(node[2], env)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    if kind == "/":
        return a / b
    if kind == "//":
        return Fraction(a // b)
    if kind == "%":
        return a % b
    return a ** int(b)


def split_names(expr):
    """The fields a formula reads, in order, with repeats."""
    return [name for name in NAME.findall(expr) if name != CEIL_TO[:-1]]


def to_int(x):
    if x.denominator != 1 or x < 0:
        raise Misfit(f"a size evaluates to {x}")
    return int(x)


def to_count(x):
    """A layer count: a whole number below 0 is no layers, as Python's
    `range(n)` gives none (SAM's IoU head has `iou_head_depth - 2` hidden
    layers, none at a depth of 1); the Rust twin is
    `Formula::evaluate_count`."""
    if x.denominator == 1 and x < 0:
        return 0
    return to_int(x)
