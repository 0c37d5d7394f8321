"""Sizes read off the library's own arithmetic (used by generate.py, run by
hand, never by CI). formulas.py fits a size as a sum of products of fields;
some sizes are not: Parakeet's subsampling projection takes
`subsampling_conv_channels * (num_mel_bins // stride**3)` inputs, an audio
spectrogram transformer has `((num_mel_bins - patch_size) // frequency_stride
+ 1) * ((max_length - patch_size) // time_stride + 1) + 2` positions, and
no search over products finds them. Where the search finds nothing, the
model is built again with each integer field of its config a `Traced`
integer: an int that remembers the arithmetic that made it, so that each
size the modeling code computes from the config comes with its formula in
the grammar of zoo/formula.rs. A formula so recorded is kept only where it
gives the size in every sample the fit had, so a recorded number that
equals the size by chance in one sample is not taken; the held-out
variations then check it as they check any formula.

What the trace cannot follow it loses, never misreads: a true division
(`/`), `int()`, `math.log2` and the like give plain numbers, and a size
computed through them has no recorded formula."""

import copy

# Binding strength in zoo/formula.rs: `//` and `%` bind tighter than `*`
# and `/` (unlike Python), so their operands are parenthesised unless they
# are a number or a field.
PLUS, TIMES, QUOTIENT, POWER, ATOM = 1, 2, 3, 4, 5
STRENGTH = {"+": PLUS, "-": PLUS, "*": TIMES, "//": QUOTIENT, "%": QUOTIENT, "**": POWER}
# An exponent larger than this is not a size (formula.rs takes up to 64).
MOST_EXPONENT = 64


class Traced(int):
    """An int with the formula that made it, and that formula's binding
    strength (ATOM for a field or a number)."""

    def __new__(cls, value, formula, strength=ATOM):
        made = int.__new__(cls, value)
        made.formula = formula
        made.strength = strength
        return made

    # Immutable as an int is: a config the model copies keeps its traces.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class Recorder:
    """The Traced values the arithmetic made while it records."""

    values = None


def operand(x, strength, right=False):
    """`x` written as an operand of an operator of `strength`: a Traced
    value's formula, a number; parenthesised where it binds less tightly
    (or as tightly, on the right of `-` and `/`)."""
    if isinstance(x, Traced):
        formula, own = x.formula, x.strength
    else:
        formula, own = (str(x), ATOM) if x >= 0 else (f"({x})", ATOM)
    if own < strength or (right and own == strength and strength != POWER):
        return f"({formula})"
    return formula


def plain_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def arithmetic(symbol, method):
    strength = STRENGTH[symbol]

    def written(a, b, value):
        if symbol == "**":
            if isinstance(b, Traced) or not 0 <= b <= MOST_EXPONENT:
                return value
            text = f"{operand(a, ATOM)}**{b}"
        elif symbol in ("//", "%"):
            text = f"{operand(a, ATOM)}{symbol}{operand(b, ATOM)}"
        else:
            # `a-b-c` is `(a-b)-c`: the left operand keeps its own.
            text = f"{operand(a, strength)}{symbol}{operand(b, strength, right=True)}"
        made = Traced(value, text, strength)
        if Recorder.values is not None:
            Recorder.values.append(made)
        return made

    def forward(a, b):
        value = getattr(int, method)(int(a), b if not plain_int(b) else int(b))
        if not plain_int(b) or value is NotImplemented or not plain_int(value):
            return value
        return written(a, b, value)

    def backward(b, a):
        # `a <symbol> b` with a a plain int on the left.
        value = getattr(int, method)(a, int(b)) if plain_int(a) else NotImplemented
        if value is NotImplemented or not plain_int(value):
            return value
        if symbol == "**":
            return value
        return written(a, b, value)

    return forward, backward


for _symbol, _method in (("+", "__add__"), ("-", "__sub__"), ("*", "__mul__"),
                         ("//", "__floordiv__"), ("%", "__mod__"), ("**", "__pow__")):
    _forward, _backward = arithmetic(_symbol, _method)
    setattr(Traced, _method, _forward)
    setattr(Traced, "__r" + _method[2:], _backward)


def traced_value(value, name):
    """A config value with each integer in it Traced under its flattened
    name (generate.flatten's: `image_size.0`, `rope_parameters.factor`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Traced(value, name)
    if isinstance(value, (list, tuple)) and value and all(plain_int(v) for v in value):
        return type(value)(Traced(v, f"{name}.{i}") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: traced_value(v, f"{name}.{k}") for k, v in value.items()}
    return value


def trace_config(config, prefix=""):
    """Each integer field of `config` and of its sub-configs made Traced."""
    for key, value in config.to_dict().items():
        if key.startswith("_"):
            continue
        try:
            held = getattr(config, key, None)
        except Exception:  # noqa: BLE001 - a field read only per layer (DOTS3's heads) stays plain
            continue
        if hasattr(held, "to_dict") and not isinstance(held, dict):
            trace_config(held, f"{prefix}{key}.")
        elif plain_int(held) or isinstance(held, (list, tuple, dict)):
            try:
                setattr(config, key, traced_value(held, prefix + key))
            except Exception:  # noqa: BLE001 - a field the class will not take stays plain
                pass


def traced_sizes(config_class, model_class, config_dict, listing):
    """{size: [formula, ...]} for each integer the modeling code computed
    from the config while building the model of `config_dict`, shortest
    formula first; {} where the traced build differs from `listing` (the
    untraced build's), so a trace never describes another model."""
    import torch
    Recorder.values = []
    try:
        config = config_class.from_dict(copy.deepcopy(config_dict))
        trace_config(config)
        with torch.device("meta"):
            model = model_class(config)
        made = Recorder.values
    except Exception:  # noqa: BLE001 - a build the trace breaks gives nothing
        return {}
    finally:
        Recorder.values = None
    got = [(k, [int(s) for s in v.shape], str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()]
    if got != listing:
        return {}
    sizes = {}
    for value in made:
        sizes.setdefault(int(value), set()).add(value.formula)
    return {size: sorted(found, key=lambda f: (len(f), f)) for size, found in sizes.items()}
