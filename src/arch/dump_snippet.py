# ckptcheck model dump. Run this in your own Python, where your model is
# built (its weights need not be loaded: for most models one built under
# `with torch.device("meta"):` works), then check a checkpoint against the
# file it writes:
#     ckptcheck check CHECKPOINT --model model.ckptcheck.json
# It records what load_state_dict(strict=True) depends on and nothing else:
# every state_dict() key in order with its shape and dtype, which are
# parameters, and the module tree in the order load_state_dict walks it.
# No weights, no code, no paths leave your machine.
import json


def ckptcheck_dump(model, path="model.ckptcheck.json"):
    with open(path, "w") as f:
        json.dump(ckptcheck_dump_dict(model), f)
    return path


def ckptcheck_dump_dict(model):
    import torch

    entries = []
    first_key = {}  # id of a tensor -> the first key it appears under
    for key, value in model.state_dict(keep_vars=True).items():
        entry = {
            "key": key,
            "shape": [int(n) for n in value.shape],
            "dtype": str(value.dtype).replace("torch.", ""),
            "kind": "parameter" if isinstance(value, torch.nn.Parameter) else "buffer",
        }
        if id(value) in first_key:
            # Tied: the same tensor under another name (lm_head and the embeddings).
            entry["tied_to"] = first_key[id(value)]
        else:
            first_key[id(value)] = key
        entries.append(entry)
    modules = []
    for name, module in model.named_modules(remove_duplicate=False):
        norm = isinstance(module, torch.nn.modules.batchnorm._NormBase)
        modules.append({
            "name": name,
            "class": type(module).__name__,
            # BatchNorm-like modules fill num_batches_tracked for old files.
            "batchnorm": bool(norm and module.track_running_stats),
            # Buffers state_dict() leaves out (persistent=False).
            "non_persistent": sorted(getattr(module, "_non_persistent_buffers_set", ())),
        })
    dump = {
        "format": "ckptcheck-model-dump",
        "version": 1,
        "class": type(model).__name__,
        "module": type(model).__module__,
        "state_dict": entries,
        "modules": modules,
    }
    prefix = getattr(model, "base_model_prefix", None)
    if prefix is not None and hasattr(model, "config"):
        # A transformers PreTrainedModel: from_pretrained's rules apply.
        dump["transformers"] = {
            "base_model_prefix": prefix,
            "model_type": getattr(model.config, "model_type", None),
        }
    return dump


# ckptcheck_dump(model)  # writes model.ckptcheck.json
