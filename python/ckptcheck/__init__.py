"""ckptcheck: will this checkpoint load into this model, and if not, why and
what to change? Answered from the bytes that describe the tensors only: no
tensor data is read to answer it, and no pickle is ever run.

The functions mirror the command line's JSON (``ckptcheck ... --json``):

- ``inspect(path_or_paths)`` -> dict: the tensors, formats, pickle audit.
- ``check(path, model=..., loader="strict")`` -> ``Report``: what
  ``load_state_dict`` would say, why, and what to change. ``model`` is a
  live ``torch.nn.Module`` (meta tensors are fine: only its ``state_dict()``
  shapes and module tree are read), a preset name, a config JSON path or
  dict, a model dump, or a reference checkpoint.
- ``check_pipeline(folder, variant=None)`` -> dict: a diffusers pipeline
  folder (``model_index.json``), component by component, as
  ``DiffusionPipeline.from_pretrained`` loads it.
- ``scan(path_or_paths)`` -> dict: NaN, Inf and all-zero tensors, statistics.
- ``convert(path_or_paths, out, ...)`` -> dict: write safetensors.
- ``presets()`` -> list of dicts.

Paths may be local files, folders (the files in them), or URLs read by byte
range: ``https://``, ``s3://``, ``gs://``, ``az://``, ``hf://owner/repo/file``.
Errors raise ``ckptcheck.Error``, whose ``kind`` is the command line's error
kind (``"truncated"``, ``"unsafe_pickle"``, ``"remote"``, ...).

Every call releases the GIL, so threads and Dask workers run files side by
side.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native

__version__: str = _native.__version__

__all__ = [
    "Error",
    "Report",
    "check",
    "check_pipeline",
    "convert",
    "inspect",
    "model_dump",
    "presets",
    "scan",
]

PathLike = Union[str, "os.PathLike[str]"]
Paths = Union[PathLike, Sequence[PathLike]]


class Error(Exception):
    """A file ckptcheck cannot read, or a bad argument.

    ``kind`` is the stable tag of the command line's JSON (``"io"``,
    ``"truncated"``, ``"unsupported_format"``, ``"unsafe_pickle"``,
    ``"remote"``, ...); ``file``, ``tensor`` and ``offset`` say where, and
    ``cause``/``fix`` name a known real-world cause and what to do.
    """

    def __init__(self, info: Mapping[str, Any]):
        self.info: Dict[str, Any] = dict(info)
        self.kind: str = str(info.get("kind", "io"))
        self.message: str = str(info.get("message", ""))
        self.file: Optional[str] = info.get("file")
        self.tensor: Optional[str] = info.get("tensor")
        self.offset: Optional[int] = info.get("offset")
        self.cause: Optional[str] = info.get("cause")
        self.fix: Optional[str] = info.get("fix")
        where = ", ".join(
            part
            for part in (
                self.file,
                f"tensor {self.tensor}" if self.tensor else None,
                f"byte {self.offset}" if self.offset is not None else None,
            )
            if part
        )
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        super().__init__(text)


def _paths(path_or_paths: Paths) -> List[str]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [os.fspath(path_or_paths)]
    paths = [os.fspath(p) for p in path_or_paths]
    if not paths:
        raise Error({"kind": "bad_argument", "message": "no file given"})
    return paths


def _result(text: str) -> Any:
    value = json.loads(text)
    if isinstance(value, dict) and set(value) == {"error"}:
        raise Error(value["error"])
    return value


def inspect(path_or_paths: Paths, *, exact_offsets: bool = False) -> Dict[str, Any]:
    """List a checkpoint's tensors, as ``ckptcheck inspect --json`` does.

    Several paths (or a folder) make one sharded checkpoint. A pickle that
    could run code is listed all the same, with its ``"error"`` (kind
    ``unsafe_pickle``) in the result, as the command line prints it.
    """
    return _result(_native.inspect(_paths(path_or_paths), exact_offsets))


def check_pipeline(folder: PathLike, *, variant: Optional[str] = None) -> Dict[str, Any]:
    """Check a diffusers pipeline folder (``model_index.json`` and a
    subfolder per component) as ``ckptcheck check FOLDER --json`` does:
    each component against its config with its library's loader, then the
    components against each other. Returns the report (``loads``,
    ``consistent``, ``components``, ``disagreements``) with its ``text``.
    ``variant`` is ``from_pretrained``'s (``"fp16"``)."""
    result = _result(_native.check_pipeline(os.fspath(folder), variant))
    return {**result["pipeline"], "text": result["text"]}


def scan(path_or_paths: Paths) -> Dict[str, Any]:
    """Read every weight once: NaN, Inf, all-zero tensors and statistics,
    as ``ckptcheck scan --json``."""
    return _result(_native.scan(_paths(path_or_paths)))


def convert(
    path_or_paths: Paths,
    out: PathLike,
    *,
    dtype: str = "keep",
    shard_size: Optional[int] = None,
    state_dict_path: Optional[str] = None,
) -> Dict[str, Any]:
    """Write the checkpoint's tensors as safetensors without running its
    pickle, as ``ckptcheck convert --json -o OUT``: ``out`` ending in
    ``.safetensors`` is one file, anything else a folder (shards and their
    index when ``shard_size`` bytes are exceeded). ``dtype`` is ``keep``,
    ``fp16``, ``bf16`` or ``fp32``."""
    return _result(
        _native.convert(_paths(path_or_paths), os.fspath(out), dtype, shard_size, state_dict_path)
    )


def presets() -> List[Dict[str, str]]:
    """The built-in model presets (name, family, description)."""
    return _result(_native.presets())


_dump_namespace: Dict[str, Any] = {}


def model_dump(module: Any) -> Dict[str, Any]:
    """What ``load_state_dict`` depends on in ``module`` (an ``nn.Module``):
    every ``state_dict()`` key with shape and dtype, and the module tree. The
    same dump ``ckptcheck snippet`` prints the code for; no weights are
    read, so a model built on the ``meta`` device works."""
    if not _dump_namespace:
        # The snippet is ckptcheck's own code, shipped in the native module
        # so that the command line and this package write one format.
        exec(compile(_native.DUMP_SNIPPET, "ckptcheck_dump_snippet.py", "exec"), _dump_namespace)
    return _dump_namespace["ckptcheck_dump_dict"](module)


def _is_module(model: Any) -> bool:
    return callable(getattr(model, "state_dict", None)) and callable(
        getattr(model, "named_modules", None)
    )


def _model_arguments(model: Any) -> "tuple[str, List[str]]":
    if _is_module(model):
        return "dump", [json.dumps(model_dump(model))]
    if isinstance(model, Mapping):
        if model.get("format") == "ckptcheck-model-dump":
            return "dump", [json.dumps(dict(model))]
        return "config_texts", [json.dumps(dict(model))]
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict) and hasattr(model, "model_type"):
        # A transformers PretrainedConfig.
        return "config_texts", [json.dumps(to_dict())]
    if isinstance(model, (str, os.PathLike)):
        return "named", [os.fspath(model)]
    if isinstance(model, (list, tuple)):
        return "configs", [os.fspath(m) for m in model]
    raise Error(
        {
            "kind": "bad_argument",
            "message": f"model must be an nn.Module, a preset name, a path, or a config dict; got {type(model).__name__}",
        }
    )


class Report:
    """What ``model.load_state_dict(checkpoint)`` would do, without doing it.

    ``loads`` is True when the load does not raise; ``verdict`` is
    ``"loads"``, ``"loads-with-warnings"`` or ``"wont-load"``. The lists and
    ``pytorch_error`` are PyTorch's own (the error text verbatim);
    ``explanation`` says why in config terms, ``fix`` what to change.
    """

    def __init__(self, data: Mapping[str, Any], text: str = ""):
        self.data: Dict[str, Any] = dict(data)
        self.text: str = text

    @property
    def loads(self) -> bool:
        return bool(self.data["loads"])

    @property
    def verdict(self) -> str:
        return str(self.data["verdict"])

    @property
    def missing_keys(self) -> List[str]:
        return list(self.data["missing_keys"])

    @property
    def unexpected_keys(self) -> List[str]:
        return list(self.data["unexpected_keys"])

    @property
    def size_mismatches(self) -> List[Dict[str, Any]]:
        return list(self.data["size_mismatches"])

    @property
    def warnings(self) -> List[str]:
        return list(self.data["warnings"])

    @property
    def explanation(self) -> List[Dict[str, Any]]:
        return list(self.data["explanation"])

    @property
    def fix(self) -> Optional[Dict[str, Any]]:
        return self.data.get("fix")

    @property
    def pytorch_error(self) -> Optional[str]:
        return self.data.get("pytorch_error")

    @property
    def inferred(self) -> Dict[str, Any]:
        return dict(self.data.get("inferred") or {})

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.data)

    def to_json(self, **kwargs: Any) -> str:
        """The report as ``ckptcheck check --json`` prints it."""
        return json.dumps(self.data, **kwargs)

    def __bool__(self) -> bool:
        return self.loads

    def __str__(self) -> str:
        return self.text or self.to_json(indent=2)

    def __repr__(self) -> str:
        first = self.text.splitlines()[0] if self.text else self.verdict
        return f"<ckptcheck.Report {self.data.get('file')!r}: {first}>"

    def _repr_html_(self) -> str:
        e = html.escape
        colour = {"loads": "#1a7f37", "loads-with-warnings": "#9a6700"}.get(self.verdict, "#cf222e")
        first = self.text.splitlines()[0] if self.text else self.verdict
        rows = [
            f'<div style="font-weight:600;color:{colour}">{e(first)}</div>',
            f"<div><code>{e(str(self.data.get('file')))}</code> against "
            f"<code>{e(str(self.data.get('model')))}</code> ({e(str(self.data.get('loader')))} loader)</div>",
        ]
        if self.explanation:
            items = "".join(f"<li>{e(str(c.get('text', c)))}</li>" for c in self.explanation)
            rows.append(f"<div>Why:<ul>{items}</ul></div>")
        if self.fix:
            rows.append(f"<div>Fix: {e(str(self.fix.get('summary', self.fix)))}</div>")

        def table(title: str, items: Iterable[str]) -> None:
            items = list(items)
            if items:
                shown = "".join(f"<li><code>{e(i)}</code></li>" for i in items[:20])
                more = f"<li>… {len(items) - 20} more</li>" if len(items) > 20 else ""
                rows.append(
                    f"<details><summary>{e(title)} ({len(items)})</summary><ul>{shown}{more}</ul></details>"
                )

        table("Missing keys", self.missing_keys)
        table("Unexpected keys", self.unexpected_keys)
        table(
            "Size mismatches",
            (
                f"{m.get('key')}: checkpoint {m.get('checkpoint_shape')}, model {m.get('model_shape')}"
                for m in self.size_mismatches
            ),
        )
        if self.pytorch_error:
            rows.append(
                f"<details><summary>PyTorch's error</summary><pre>{e(self.pytorch_error)}</pre></details>"
            )
        return '<div class="ckptcheck-report">' + "".join(rows) + "</div>"


def check(
    path: Paths,
    model: Any,
    *,
    loader: str = "strict",
    state_dict_path: Optional[str] = None,
) -> Report:
    """Would ``model.load_state_dict(torch.load(path))`` work, and if not,
    why and what to change? Reads only the checkpoint's tensor listing and,
    for a live module, its ``state_dict()`` shapes: no tensor data, no
    pickle run. ``loader`` is ``strict``, ``hf`` (``from_pretrained``),
    ``peft``, ``cn-clip`` or ``cn-clip-resume``."""
    kind, values = _model_arguments(model)
    result = _result(_native.check(_paths(path), kind, values, loader, state_dict_path))
    return Report(result["report"], result["text"])
