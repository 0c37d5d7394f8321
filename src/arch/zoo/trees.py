"""State dicts as trees for generate.py: a sample's keys as a trie in
`state_dict()` order, tries of several samples aligned into one template
(alike layers a `repeat`, a list's distinct first layers `items`), frozen
into the JSON the Rust evaluator reads (src/arch/zoo/mod.rs), expanded back
for checks, and merged with the tries of a flag's other value (`if`
conditions)."""

import difflib

from formulas import NAME, Misfit, evaluate, to_count, to_int


class Node:
    def __init__(self):
        self.own = []  # (name, shape, dtype)
        self.children = {}  # name -> Node, insertion order


def trie(listing):
    root = Node()
    for key, shape, dtype in listing:
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            node = node.children.setdefault(part, Node())
        node.own.append((parts[-1], shape, dtype))
    return root


def walk(node, prefix=""):
    for name, shape, dtype in node.own:
        yield prefix + name, shape, dtype
    for name, child in node.children.items():
        yield from walk(child, prefix + name + ".")


class Slot:
    """One number of the template (a size or a count): its value per sample.
    `bound` holds the samples whose value is only a least value (a split
    index in a list with no layer past it)."""

    def __init__(self, values, bound=()):
        self.values = values  # sample index -> int
        self.bound = set(bound)
        self.expr = None


def align(nodes, where, absent_ok=False):
    """nodes: per sample, a Node or None (absent). Returns a template item.
    `absent_ok`: a sample may lack the item (one kind of a split list's
    layers); its sizes are then fitted on the samples that have it."""
    present = [n for n in nodes if n is not None]
    first = present[0]
    own_names = [t[0] for t in first.own]
    for n in present:
        if [t[0] for t in n.own] != own_names:
            raise Misfit(f"tensors under {where or 'the root'} differ")
        if [t[2] for t in n.own] != [t[2] for t in first.own]:
            raise Misfit(f"dtypes under {where or 'the root'} differ")
    if any(n is None for n in nodes) and own_names and not absent_ok:
        raise Misfit(f"{where} exists in some samples only")
    own = []
    for i, (name, shape, dtype) in enumerate(first.own):
        ranks = {len(n.own[i][1]) for n in present}
        if len(ranks) != 1:
            raise Misfit(f"{where}{name} changes rank")
        dims = [Slot({s: n.own[i][1][d] for s, n in enumerate(nodes) if n is not None}) for d in range(len(shape))]
        own.append((name, dims, dtype))
    children = []
    names = list(first.children)
    for n in present:
        if list(n.children) != names:
            if all(c.isdigit() for c in n.children) and all(c.isdigit() for c in names):
                continue
            raise Misfit(f"modules under {where or 'the root'} differ ({list(n.children)[:4]} vs {names[:4]})")
    numeric = names and all(c.isdigit() for c in names)
    if numeric and names != [str(i) for i in range(len(names))] \
            and all(list(n.children) == names for n in present):
        # A list with gaps that stay put (diffusers' `ff.net`: a Dropout
        # without weights at index 1) is named children like any other.
        numeric = False
    if numeric:
        return {"own": own, "list": align_list(nodes, where, absent_ok)}
    for name in names:
        children.append((name, align([n.children.get(name) if n is not None else None for n in nodes],
                                     where + name + ".", absent_ok)))
    return {"own": own, "children": children}


def same_structure(a, b):
    return list(walk(a)) == list(walk(b))


def same_kind(a, b):
    """Two layers with the same keys, ranks and dtypes, of any sizes (the
    layers of one kind in two samples)."""
    return [(k, len(shape), dtype) for k, shape, dtype in walk(a)] == \
        [(k, len(shape), dtype) for k, shape, dtype in walk(b)]


# Whether a list may end in a last layer of its own, and whether a
# derivation made one: generate.py derives a class again without it when a
# description with one fails (a count of layers below the two own ones).
ALLOW_LAST = True
LAST_USED = False
# Likewise for a list split in two kinds (`split_list`).
ALLOW_SPLIT = True
SPLIT_USED = False


def align_list(nodes, where, absent_ok=False):
    """A ModuleList: its first `k` layers as items of their own (T5's first
    block holds the relative attention bias), then the alike rest as a
    repeat, then at most one last layer of its own (SD3's last joint block
    has no context output); or a list split in two kinds (`split_list`).
    With `absent_ok`, samples without the list are left out of its counts."""
    counts = {}
    kids = {}
    absent = set()
    for s, n in enumerate(nodes):
        if n is None:
            counts[s] = 0
            kids[s] = []
            if absent_ok:
                absent.add(s)
            continue
        keys = list(n.children)
        if keys != [str(i) for i in range(len(keys))]:
            raise Misfit(f"{where} is a list with gaps")
        counts[s] = len(keys)
        kids[s] = list(n.children.values())
    present = [s for s in sorted(counts) if s not in absent]
    global LAST_USED, SPLIT_USED
    for k, t in ((0, 0), (1, 0), (2, 0), (0, 1), (1, 1)):
        if t and not ALLOW_LAST:
            continue
        if any(0 < counts[s] <= k + t for s in present) or ((k or t) and any(counts[s] == 0 for s in present)):
            continue
        if not all(all(same_structure(kids[s][k], c) for c in kids[s][k + 1:counts[s] - t])
                   for s in kids if counts[s] > k + t):
            continue
        try:
            heads = [align([kids[s][i] if counts[s] > k else None for s in sorted(kids)], f"{where}{i}.", absent_ok)
                     for i in range(k)]
            body = align([kids[s][k] if counts[s] > k + t else None for s in sorted(kids)], where + "N.", absent_ok)
            last = [align([kids[s][counts[s] - 1] if counts[s] else None for s in sorted(kids)],
                          where + "last.", absent_ok)] if t else []
        except Misfit:
            # Alike within each sample, not across them (DeepSeek-V3 with
            # one dense layer against three): another layout, or a split.
            continue
        out = {"items": heads, "repeat": Slot({s: max(counts[s] - k - t, 0) for s in present}), "body": body}
        if t:
            LAST_USED = True
            out["last"] = last
        return out
    split = split_list(kids, counts, where) if ALLOW_SPLIT and not absent_ok else None
    if split is not None:
        SPLIT_USED = True
        return split
    if len({counts[s] for s in present}) != 1:
        raise Misfit(f"layers of {where} differ and their count changes")
    n = counts[present[0]]
    return {"items": [align([m.children[str(i)] if m is not None else None for m in nodes], f"{where}{i}.", absent_ok)
                      for i in range(n)]}


def split_list(kids, counts, where, last_allowed=True):
    """A list whose first layers are of one kind and the rest of another
    (DeepSeek-V3's first `first_k_dense_replace` layers have a dense MLP,
    the rest experts), or None: a count of all its layers, the index where
    the kind changes (a least value where no layer is past it), and a body
    for each kind, each fitted on the samples that have it. The list may
    also end in a last layer of its own (SD3.5 Medium: its first 13 joint
    blocks have a second attention, the rest not, and the last has no
    context output), when every sample's last layer differs from the one
    before it and all are alike."""
    global LAST_USED
    if ALLOW_LAST and last_allowed and kids and all(len(layers) >= 3 for layers in kids.values()):
        lasts = [layers[-1] for layers in kids.values()]
        if all(not same_kind(layers[-1], layers[-2]) for layers in kids.values()) \
                and all(same_kind(lasts[0], other) for other in lasts[1:]):
            inner = split_list({s: layers[:-1] for s, layers in kids.items()},
                               {s: count - 1 for s, count in counts.items()}, where, False)
            if inner is not None:
                LAST_USED = True
                inner["last"] = [align([kids[s][-1] for s in sorted(kids)], where + "last.")]
                return inner
    firsts = {}
    for s in sorted(kids):
        layers = kids[s]
        change = next((i for i in range(1, len(layers)) if not same_structure(layers[0], layers[i])),
                      len(layers))
        if change < len(layers):
            if any(not same_structure(layers[change], c) for c in layers[change + 1:]):
                return None
            firsts[s] = change
    if not firsts:
        return None
    one = next(iter(firsts))
    first_kind, second_kind = kids[one][0], kids[one][firsts[one]]
    split, bound = {}, set()
    for s in sorted(kids):
        layers = kids[s]
        if s in firsts:
            if not (same_kind(layers[0], first_kind) and same_kind(layers[firsts[s]], second_kind)):
                return None
            split[s] = firsts[s]
        elif layers and same_kind(layers[0], second_kind):
            split[s] = 0
        elif not layers or same_kind(layers[0], first_kind):
            split[s] = len(layers)
            bound.add(s)
        else:
            return None
    order = sorted(kids)
    body = align([kids[s][0] if split[s] > 0 else None for s in order], where + "N.", absent_ok=True)
    rest = align([kids[s][split[s]] if split[s] < counts[s] else None for s in order], where + "M.",
                 absent_ok=True)
    return {"items": [], "repeat": Slot(dict(counts)), "body": body, "split": Slot(split, bound), "rest": rest}


def split_of(node, env):
    """The index where a split list's layers change kind (`inf` for a list
    without a split)."""
    if "split" not in node:
        return float("inf")
    return to_int(evaluate(node["split"], env))


def slots(item, out):
    for _, dims, _ in item["own"]:
        out.extend(dims)
    if "list" in item:
        lst = item["list"]
        for it in lst["items"]:
            slots(it, out)
        if "repeat" in lst:
            out.append(lst["repeat"])
            slots(lst["body"], out)
        if "split" in lst:
            out.append(lst["split"])
            slots(lst["rest"], out)
        for it in lst.get("last", []):
            slots(it, out)
    else:
        for _, child in item["children"]:
            slots(child, out)
    return out


def split_slots(item, out=None):
    """The split indices of a template's lists."""
    out = [] if out is None else out
    if "list" in item:
        lst = item["list"]
        if "split" in lst:
            out.append(lst["split"])
        for it in lst["items"] + [lst[k] for k in ("body", "rest") if k in lst] + lst.get("last", []):
            split_slots(it, out)
    else:
        for _, child in item["children"]:
            split_slots(child, out)
    return out


def counts_of(template):
    out = []

    def go(item):
        if "list" in item:
            for it in item["list"]["items"]:
                go(it)
            if "repeat" in item["list"]:
                out.append(item["list"]["repeat"])
                go(item["list"]["body"])
            if "split" in item["list"]:
                out.append(item["list"]["split"])
                go(item["list"]["rest"])
            for it in item["list"].get("last", []):
                go(it)
        else:
            for _, c in item["children"]:
                go(c)
    go(template)
    return out


def freeze(item):
    """Template -> JSON: tensors as [name, [dims], dtype?], modules as
    [name, item], lists as {"repeat": expr, "body": item} or {"items": [...]}."""
    out = []
    for name, dims, dtype in item["own"]:
        t = [name, [s.expr for s in dims]]
        if dtype != "float32":
            t.append(dtype)
        out.append(t)
    if "list" in item:
        lst = item["list"]
        node = {"t": out}
        if lst["items"]:
            node["items"] = [freeze(it) for it in lst["items"]]
        if "repeat" in lst:
            node["repeat"] = lst["repeat"].expr
            node["body"] = freeze(lst["body"])
        if "split" in lst:
            node["split"] = lst["split"].expr
            node["rest"] = freeze(lst["rest"])
        if lst.get("last"):
            node["last"] = [freeze(it) for it in lst["last"]]
        return node
    node = {"t": out}
    if item["children"]:
        node["c"] = [[name, freeze(child)] for name, child in item["children"]]
    return node


def holds(node, name, env):
    for field, value in node.get("if", {}).get(name, []):
        if bool(env.get(field)) != value:
            return False
    return True


def expand(node, env, prefix=""):
    out = []
    for t in node["t"]:
        if not holds(node, t[0], env):
            continue
        shape = [to_int(evaluate(d, env)) for d in t[1]]
        out.append((prefix + t[0], shape, t[2] if len(t) > 2 else "float32"))
    first = len(node.get("items", []))
    for i, it in enumerate(node.get("items", [])):
        out += expand(it, env, f"{prefix}{i}.")
    # Layers whose kind a list of names chooses (kinds.py): the list is in
    # `env` under its path, as resolve_env puts it.
    kinds = dict(node.get("kinds", []))
    chosen = zip(*[env[path] for path in node["by"]]) if "by" in node else []
    for i, names in enumerate(chosen):
        out += expand(kinds["+".join(names)], env, f"{prefix}{i}.")
    count = 0
    if "repeat" in node:
        count = to_count(evaluate(node["repeat"], env))
        split = split_of(node, env)
        for i in range(count):
            out += expand(node["body"] if i < split else node["rest"], env, f"{prefix}{first + i}.")
    for i, it in enumerate(node.get("last", [])):
        out += expand(it, env, f"{prefix}{first + count + i}.")
    for name, child in node.get("c", []):
        if holds(node, name, env):
            out += expand(child, env, prefix + name + ".")
    return out


def conditional_exprs(node):
    for t in node["t"]:
        yield from t[1]
    if "repeat" in node:
        yield node["repeat"]
        yield from conditional_exprs(node["body"])
    if "split" in node:
        yield node["split"]
        yield from conditional_exprs(node["rest"])
    for it in node.get("items", []) + node.get("last", []):
        yield from conditional_exprs(it)
    for _, child in node.get("c", []):
        yield from conditional_exprs(child)


def matching(values, candidates, envs):
    """The first known formula that gives each sample's value."""
    for expr in candidates:
        try:
            if all(evaluate(expr, env) == v for v, env in zip(values, envs)):
                return expr
        except (KeyError, ZeroDivisionError):
            continue
    # A small multiple of a known size (GPT-2's cross-attention keys and
    # values, `2*n_embd`, where the model otherwise has `3*n_embd`).
    for factor in (2, 3, 4):
        for expr in candidates:
            if "+" in expr or "-" in expr:
                continue
            try:
                if all(factor * evaluate(expr, env) == v for v, env in zip(values, envs)):
                    return f"{factor}*{expr}"
            except (KeyError, ZeroDivisionError):
                continue
    # A known count plus one (wav2vec2's `layer_weights` under
    # `use_weighted_layer_sum`: a weight per hidden layer and one for the
    # embeddings, `num_hidden_layers+1`). Tried last, and only on a single
    # field: five samples at drawn sizes choose it, the rest check it.
    for expr in candidates:
        if not NAME.fullmatch(expr):
            continue
        try:
            if all(evaluate(expr, env) + 1 == v for v, env in zip(values, envs)):
                return f"{expr}+1"
        except (KeyError, ZeroDivisionError):
            continue
    raise Misfit(f"no formula of the model gives {values[0]}")


def new_tensors(nodes, index, candidates, envs):
    name, shape, dtype = nodes[0].own[index]
    for n in nodes[1:]:
        if len(n.own) <= index or n.own[index][0] != name or len(n.own[index][1]) != len(shape):
            raise Misfit("flipped variations differ in structure")
    dims = [matching([n.own[index][1][d] for n in nodes], candidates, envs) for d in range(len(shape))]
    return [name, dims] + ([dtype] if dtype != "float32" else [])


def as_item(nodes, candidates, envs):
    """A subtree seen with the flag only, sized by known formulas."""
    node = {"t": [new_tensors(nodes, i, candidates, envs) for i in range(len(nodes[0].own))]}
    names = list(nodes[0].children)
    if names and all(c.isdigit() for c in names):
        raise Misfit("a list appears with the flag")
    if names:
        node["c"] = [[c, as_item([n.children[c] for n in nodes], candidates, envs)] for c in names]
    return node


def keep_absent(old, merged, name_of, present):
    """`merged` with the entries of `old` that were left out of a merge (not
    `present` in its tries) put back after the entry they followed."""
    out = list(merged)
    for index, entry in enumerate(old):
        if present(name_of(entry)):
            continue
        before = [name_of(e) for e in old[:index]]
        names = [name_of(e) for e in out]
        at = max((names.index(n) + 1 for n in before if n in names), default=0)
        out.insert(at, entry)
    return out


def merge(item, others, field, value, candidates, envs, flags=None):
    """`item` (the default's template) merged with `others` (tries of the
    model with `field` = `value`, at several sizes): entries of one side
    only get a condition. `flags` holds the other flags' defaults: an entry
    an earlier flag added (`q_proj.bias` under `attention_bias`) is absent
    from these tries, where that flag keeps its default, and is left as it
    is rather than tied to this flag too."""
    flags = {} if flags is None else flags
    other = others[0]
    out = dict(item)
    conds = {k: list(v) for k, v in item.get("if", {}).items()}

    def present(name):
        return all(flags.get(f, v) == v for f, v in conds.get(name, []))

    own = [t for t in item["t"] if present(t[0])]
    mine = [t[0] for t in own]
    theirs = [t[0] for t in other.own]
    tensors = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=mine, b=theirs, autojunk=False).get_opcodes():
        if op == "equal":
            tensors += own[a0:a1]
            continue
        for t in own[a0:a1]:
            conds.setdefault(t[0], []).append([field, not value])
            tensors.append(t)
        for index in range(b0, b1):
            conds.setdefault(other.own[index][0], []).append([field, value])
            tensors.append(new_tensors(others, index, candidates, envs))
    out["t"] = keep_absent(item["t"], tensors, lambda t: t[0], present)
    if "split" in item:
        # A list of two kinds: each kind merged with the flipped samples'
        # layers of that kind.
        kinds = ([], []), ([], [])
        last = len(item.get("last", []))
        for o, env in zip(others, envs):
            kids = list(o.children.values())
            kids = kids[:len(kids) - last]
            at = min(split_of(item, env), len(kids))
            for (layers, where), group in zip(kinds, (kids[:at], kids[at:])):
                if any(not same_structure(group[0], k) for k in group[1:]):
                    raise Misfit("layers differ with the flag")
                if group:
                    layers.append(group[0])
                    where.append(env)
        if not kinds[0][0] or not kinds[1][0]:
            raise Misfit("a split list's two kinds are not both seen with the flag")
        out["body"] = merge(item["body"], kinds[0][0], field, value, candidates, kinds[0][1], flags)
        out["rest"] = merge(item["rest"], kinds[1][0], field, value, candidates, kinds[1][1], flags)
        if last:
            out["last"] = [merge(it, [list(o.children.values())[len(o.children) - last + i] for o in others],
                                 field, value, candidates, envs, flags)
                           for i, it in enumerate(item["last"])]
    elif "repeat" in item or "items" in item:
        first = len(item.get("items", []))
        last = len(item.get("last", []))
        for o in others:
            kids = list(o.children.values())
            if "repeat" not in item and len(kids) != first:
                raise Misfit("the layer count changes with the flag")
            if len(kids) < first + ("repeat" in item) + last:
                raise Misfit("the list shrinks with the flag")
            if any(not same_structure(kids[first], k) for k in kids[first + 1:len(kids) - last]):
                raise Misfit("layers differ with the flag")
        if last:
            out["last"] = [merge(it, [list(o.children.values())[len(o.children) - last + i] for o in others],
                                 field, value, candidates, envs, flags)
                           for i, it in enumerate(item["last"])]
        if first:
            out["items"] = [merge(it, [o.children[str(i)] for o in others], field, value, candidates, envs,
                                  flags)
                            for i, it in enumerate(item["items"])]
        if "repeat" in item:
            out["body"] = merge(item["body"], [o.children[str(first)] for o in others], field, value,
                                candidates, envs, flags)
    else:
        own = [c for c in item.get("c", []) if present(c[0])]
        mine = [c[0] for c in own]
        theirs = list(other.children)
        children = []
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=mine, b=theirs, autojunk=False).get_opcodes():
            if op == "equal":
                for name, child in own[a0:a1]:
                    if any(name not in o.children for o in others):
                        raise Misfit("flipped variations differ in structure")
                    children.append([name, merge(child, [o.children[name] for o in others], field, value,
                                                 candidates, envs, flags)])
                continue
            for name, child in own[a0:a1]:
                conds.setdefault(name, []).append([field, not value])
                children.append([name, child])
            for name in theirs[b0:b1]:
                conds.setdefault(name, []).append([field, value])
                if any(name not in o.children for o in others):
                    raise Misfit("flipped variations differ in structure")
                children.append([name, as_item([o.children[name] for o in others], candidates, envs)])
        children = keep_absent(item.get("c", []), children, lambda c: c[0], present)
        if children:
            out["c"] = children
    if conds:
        out["if"] = conds
    return out
