"""Type stubs for ckptcheck's native module (PyO3). Each function returns the
JSON the command line prints with --json, or {"error": {...}}; use the
functions of the ckptcheck package, which parse it and raise ckptcheck.Error."""

from typing import List, Optional

__version__: str
DUMP_SNIPPET: str

def inspect(paths: List[str], exact_offsets: bool = False) -> str: ...
def check(
    paths: List[str],
    kind: str,
    values: List[str],
    loader: str = "strict",
    state_dict_path: Optional[str] = None,
) -> str: ...
def check_pipeline(folder: str, variant: Optional[str] = None) -> str: ...
def scan(paths: List[str]) -> str: ...
def convert(
    paths: List[str],
    out: str,
    dtype: str = "keep",
    shard_size: Optional[int] = None,
    state_dict_path: Optional[str] = None,
) -> str: ...
def presets() -> str: ...
