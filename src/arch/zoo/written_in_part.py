#!/usr/bin/env python3
"""Sub-configs a config.json writes in part (run by hand, never by CI).
PaliGemmaConfig() builds its SigLIP tower without the pooling head
(`vision_use_head` False), but a config.json whose `vision_config` gives
only `{"model_type": "siglip_vision_model"}` is a SiglipVisionConfig with
that class's own default, True: the tower gains `head.*`. Depth Anything's
DINOv2 backbone is 384 wide by default and 768 when `backbone_config` is
written without `hidden_size`; Mask2Former's Swin has 18 blocks in its
third stage, Swin's own default 6; NeMo SpeechLM's Nemotron-H has the
composite's 52 `layers_block_type` entries, NemotronHConfig's own 4. Where
the description reads such a field at the composite's default (a field
`fixed` at it, a list, a list of layer kinds, a size whose default was
fitted without the sub-config present), it was wrong for such a config.

For each described class and each sub-config of its default (nested ones
too, their parents written whole), the class is built on the `meta` device
from a config.json that writes the sub-config as its `model_type` alone,
and compared with the description (fresh_values.py's comparison). Where
they differ, the fields under the sub-config whose value the description
reads otherwise than the library's config holds it are written at the
composite default's value, and the comparison made again, until they agree
(or the library or the description refuses the config): the fields so
written are recorded with those values (`given_with_parent: {sub-config:
{field: value}}`). The Rust side refuses a config.json that writes the
sub-config without them, naming each (save_pretrained writes them all, as
each differs from the sub-config class's own default), and an inferred
config that writes the sub-config writes them. Where writing them is not
enough, the sub-config must be written whole (`"*"`). Where the library
refuses the sub-config written as an empty object but builds it with its
`model_type` (Depth Anything's `backbone_config`: it cannot pick the
sub-config class), `model_type` is one of the fields.

generate.py calls `given_with_parent` for each class it derives; run as a
script, this applies it to every class in generate.py's cache (its matrix
samples that write such a sub-config without them are dropped, as the
Rust side now refuses them) and reassembles the outputs:

    /tmp/zoo/bin/python src/arch/zoo/written_in_part.py [--only TYPE,...] [--jobs 2]
"""

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DONE_DIR = "/tmp/ckptcheck-zoo-written-in-part"
TYPE_SECONDS = 600
# Rounds of fields written before the sub-config must be written whole.
ROUNDS = 4


def sub_config_paths(default_dict, prefix="", depth=0):
    """(path, model_type) of each sub-config of a default config dict (a
    dict with a `model_type`), nested ones to three levels."""
    for key, value in default_dict.items():
        if isinstance(value, dict) and isinstance(value.get("model_type"), str):
            yield prefix + key, value["model_type"]
            if depth < 2:
                yield from sub_config_paths(value, prefix + key + ".", depth + 1)


def written_in_part(default_dict, path, model_type, given):
    """A config dict that writes the sub-config at `path` as its
    `model_type` and the fields `given` (at the default's values) only; a
    nested sub-config's parents are written whole, as the default has them."""
    import generate
    inner = {"model_type": model_type}
    for field in given:
        generate.set_path(inner, field, copy.deepcopy(generate.read_field(default_dict, f"{path}.{field}")))
    top, _, rest = path.partition(".")
    if not rest:
        return {top: inner}
    outer = {top: copy.deepcopy(default_dict[top])}
    generate.set_path(outer, path, inner)
    return outer


def config_key(field, path, config_dict):
    """The key under the sub-config at `path` that a description path
    (`backbone_config.depths.2`, a list's item) is written as (`depths`)."""
    import generate
    rest = field[len(path) + 1:]
    parts = rest.split(".")
    while len(parts) > 1 and parts[-1].isdigit():
        parts.pop()
    # A list's items are written with the list.
    while len(parts) > 1 and isinstance(generate.read_field(config_dict, f"{path}.{'.'.join(parts[:-1])}"), list):
        parts.pop()
    return ".".join(parts)


def read_otherwise(desc, config_dict, library_dict, path):
    """Keys under the sub-config at `path` whose value the description
    reads for `config_dict` otherwise than the library's built config
    (`library_dict`, its `to_dict()`) holds it."""
    import generate
    try:
        env = generate.resolve_env(desc, config_dict)
    except Exception:  # noqa: BLE001 - the description refuses it: nothing to compare
        return []
    inside = path + "."
    differ = []

    def same(mine, theirs):
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
            return float(mine) == float(theirs)
        return mine == theirs or (isinstance(theirs, tuple) and list(theirs) == mine)
    read = [(f, env.get(f)) for f in desc.get("fields", {}) if f.startswith(inside)]
    read += [(f, v) for f, v in desc.get("fixed", {}).items() if f.startswith(inside)]
    read += [(f, env.get(f)) for f, form in desc.get("named_lists", {}).items()
             if f.startswith(inside) and "exactly" in form]
    for field, mine in read:
        theirs = generate.read_field(library_dict, field)
        if mine is not None and not same(mine, theirs):
            differ.append(config_key(field, path, library_dict))
    for field, length in desc.get("lists", {}).items():
        theirs = generate.read_field(library_dict, field)
        if field.startswith(inside) and isinstance(theirs, (list, tuple)) and len(theirs) != length:
            differ.append(config_key(field, path, library_dict))
    return sorted(set(differ))


def given_with_parent(desc, config_class, model_class, facts):
    """({sub-config path: {key: value}}, {field: value}, [sample]) for the
    class (see the module's docstring): the keys each sub-config needs
    written with it, at the composite default's values; the fields among
    them the description does not read at all (a float: PP-OCRv5's
    `backbone_config.scale`), to be held at the composite default's value
    (`fixed`); and for each such sub-config the
    config that writes it with those keys alone, with the library's state
    dict for it (the description's too): a matrix sample."""
    import generate
    from assemble import clean
    from fresh_values import compare_with_description
    # Found afresh: what an earlier run recorded would refuse the probes.
    desc = {k: v for k, v in desc.items() if k != "given_with_parent"}
    try:
        default_dict = config_class().to_dict()
    except Exception:  # noqa: BLE001 - no default: nothing to try
        return {}, {}, []
    found, unread, samples = {}, {}, []

    def built(path, model_type, given):
        """(the verdict, the config dict, the library's built config as a
        dict, its state dict) for the sub-config written with `given`;
        None where the library refuses it."""
        config_dict = written_in_part(default_dict, path, model_type, given)
        try:
            library = generate.sample(config_class, model_class, config_dict)
        except Exception:  # noqa: BLE001 - the library refuses it: so will the config's user
            return None
        return compare_with_description(desc, config_dict, library[0].listing, facts)[0], config_dict, \
            library[1].to_dict(), library[0].listing

    for path, model_type in sub_config_paths(default_dict):
        # A sub-config without its `model_type` the library refuses
        # (Depth Anything's `backbone_config`: a KeyError), where ckptcheck
        # would take the default's: the name is needed too, unless the
        # library refuses it with the name as well (the first round).
        given = [] if builds_without_model_type(config_class, model_class, default_dict, path, model_type) \
            else ["model_type"]
        for _ in range(ROUNDS):
            result = built(path, model_type, given)
            if result is None and given == ["model_type"]:
                given = []
            if result is not None and result[0] == "same" and given:
                samples.append((path, result[1], result[3]))
            if result is None or result[0] != "wrong":
                break
            more = [k for k in read_otherwise(desc, result[1], result[2], path) if k not in given]
            # A size whose default is a formula over others (`head_dim`)
            # follows them: written only where the others are not enough.
            spec = desc.get("fields", {})
            primary = [k for k in more if not isinstance(spec.get(f"{path}.{k}", {}).get("default", 0), str)]
            more = primary or more
            if not more:
                # Fields the description does not read differ: each whose
                # absence alone leaves the state dicts apart is written
                # and held at the default's value.
                more, held = unread_fields(path, model_type, given, default_dict, result[2], built)
                unread.update(held)
            if not more:
                given = ["*"]
                break
            given += more
        else:
            given = ["*"]
        if given:
            # Each with the composite default's value, which an inferred
            # config writes with the sub-config.
            found[path] = {k: None if k == "*" else clean(generate.read_field(default_dict, f"{path}.{k}"))
                           for k in given}
    return found, unread, samples


def builds_without_model_type(config_class, model_class, default_dict, path, model_type):
    """Whether the library builds the class from a config that writes the
    sub-config at `path` as an empty object (whether it builds it with
    the sub-config's `model_type` is the caller's first round)."""
    import generate
    written = written_in_part(default_dict, path, model_type, [])
    generate.read_field(written, path).pop("model_type")
    try:
        generate.sample(config_class, model_class, written)
        return True
    except Exception:  # noqa: BLE001 - refused without it
        return False


def unread_fields(path, model_type, given, default_dict, library_dict, built):
    """(keys, {field: value}) for a sub-config the description does not
    read all of: the keys (other than `given`) where the library's
    sub-config differs from the default's that the state dicts need (all
    of them where no few are enough), and the scalars among those; none
    where writing them all is not enough."""
    import generate
    mine = generate.read_field(default_dict, path) or {}
    theirs = generate.read_field(library_dict, path) or {}
    keys = sorted(k for k, v in mine.items()
                  if k not in given and not k.startswith("_") and k not in ("id2label", "label2id")
                  and not isinstance(v, dict) and theirs.get(k) != v)
    all_written = built(path, model_type, given + keys)
    if not keys or all_written is None or all_written[0] == "wrong":
        return [], {}
    needed = [k for k in keys if (built(path, model_type, given + [o for o in keys if o != k]) or ["wrong"])[0]
              == "wrong"]
    held = {f"{path}.{k}": mine[k] for k in needed
            if isinstance(mine[k], (int, float, bool)) and not isinstance(mine[k], str)}
    # Those needed alone where they are enough (a rerun, with them held,
    # finds the same), else all.
    enough = needed and (built(path, model_type, given + needed) or ["wrong"])[0] != "wrong"
    return (needed if enough else keys), held


def matrix_sample(path, config_dict, listing):
    """A held-out variation of matrix.json for the sub-config at `path`
    written in part (`written_in_part` names it)."""
    from assemble import digest
    return {"config": config_dict, "count": len(listing), "digest": digest(listing), "written_in_part": path}


def left_out(desc, config_dict, facts):
    """`sub-config.key` for the first field a config dict leaves out of a
    sub-config it writes that the description needs written with it (the
    Python twin of checks.rs's check_given_with_parent), else None. A
    sub-config that names another model type than the default's (`facts`,
    assemble.py's sub_config_facts) is another description's to check
    (sub_models.py's swaps)."""
    import generate
    for path, keys in desc.get("given_with_parent", {}).items():
        written = generate.read_field(config_dict, path)
        if not isinstance(written, dict):
            continue
        default_type = facts.get(path, {}).get("model_type")
        if written.get("model_type") not in (None, default_type):
            continue
        for key in keys:
            if key == "*" or generate.read_field(written, key) is None:
                return f"{path}.{key}"
    return None


def apply_to_type(model_type):
    import generate
    from assemble import sub_config_facts
    facts = sub_config_facts(model_type).get("sub_configs", {})

    def check(name, desc, config_class, model_class, base):
        found, unread, samples = given_with_parent(desc, config_class, model_class, facts)
        return {name: {"given_with_parent": found, "unread": unread,
                       "samples": [matrix_sample(*sample) for sample in samples]}} if found else {}
    generate.pass_over_type(DONE_DIR, model_type, "classes", check)


def write_back(types):
    """The findings into the cache, each class's matrix samples the Rust
    side now refuses dropped (they leave out what the sub-config needs)."""
    import generate
    from assemble import class_key, sub_config_facts

    def update(name, desc, found, cached):
        facts = sub_config_facts(cached["model_type"]).get("sub_configs", {})
        before = desc.pop("given_with_parent", None)
        if found.get("given_with_parent"):
            desc["given_with_parent"] = found["given_with_parent"]
        for field, value in found.get("unread", {}).items():
            desc.setdefault("fixed", {})[field] = value
            cached.setdefault("fixed", {}).setdefault(name, {})[field] = (
                "not read by the description, and a sub-config written without it takes another value "
                "at which the tensors differ")
        for row in cached["matrix"]:
            if class_key(row["class"], row.get("when", {})) == name:
                row["variations"] = [v for v in row["variations"]
                                     if left_out(desc, v["config"], facts) is None
                                     and not v.get("written_in_part")]
                row["variations"] += [dict(v, config=dict(v["config"], **row.get("when", {})))
                                      for v in found.get("samples", [])]
        return desc.get("given_with_parent") != before
    return generate.rewrite_cache(DONE_DIR, types, update)


def main():
    import generate
    generate.run_pass(DONE_DIR, apply_to_type, TYPE_SECONDS, write_back,
                      "classes whose sub-configs, written in part, need fields written with them")


if __name__ == "__main__":
    import generate
    generate.pin_hash_seed()
    main()
