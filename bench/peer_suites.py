"""The pickle audit against the dedicated scanners, on their own test suites
(issue 16): detection on malicious files, false alarms on benign ones,
agreement with `torch.load(weights_only=True)`, and files a peer flags that
ckptcheck does not; plus ggml's handcrafted GGUF cases and the safetensors
attacks, where the question is "refused or accepted as its library does".

Nothing of the peers is committed here. The script reads their public
repositories from a folder you give it (`--peers DIR`, holding checkouts
named picklescan, modelscan, fickling, safetensors), runs the generator
code their tests use to write their files, and runs the peers themselves
as released on PyPI:

    git clone https://github.com/mmaitre314/picklescan   DIR/picklescan
    git clone https://github.com/protectai/modelscan     DIR/modelscan
    git clone https://github.com/trailofbits/fickling    DIR/fickling
    git clone https://github.com/huggingface/safetensors DIR/safetensors
    python3 -m venv /opt/peers && /opt/peers/bin/pip install picklescan fickling modelscan typing_extensions
    python3 -m venv /opt/fixenv && /opt/fixenv/bin/pip install torch numpy dill aiohttp requests pytest safetensors
    python3 bench/peer_suites.py --peers DIR --peer-python /opt/peers/bin/python \\
        --torch-python /opt/fixenv/bin/python

Labels (what each file is, by its suite's own tests):
  - picklescan tests/data*: its tests pin picklescan's verdict on each
    file, so a file is malicious when picklescan counts an issue on it
    (the .7z one needs py7zr, which its tests install: named malicious).
  - modelscan: the files its tests/test_modelscan.py fixtures write (pickle
    protocols 0, 3, 4, dill, zip, torch, numpy); its tests expect issues on
    the ones named malicious*/unsafe* and none on benign*/safe*.
  - fickling: the pickles test/test_bypasses.py builds, recorded as its
    tests hand them to check_safety; each test asserts the verdict (above
    LIKELY_SAFE: malicious; a few assert a legitimate pickle is not
    flagged: benign), so the verdict at that commit is the label.
  - safetensors attacks/: torch_ace.pt is malicious; the abuse attempts
    are hostile safetensors files its loader refuses (a verdict of
    "refused", not of pickle safety).
  - ggml: the handcrafted GGUF files of llama.cpp's tests/test-gguf.cpp,
    written by `gguf_handcrafted.py` beside this script (a port of its
    generator); ggml accepts exactly those its test expects a context for.

Writes bench/out/peers/results.json and prints the tables README carries.
Not a test: it needs the peers' repositories and PyPI packages.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "peers"

# ---------------------------------------------------------------------------
# Corpus: runs under --torch-python (torch, numpy, dill, pytest importable).
# ---------------------------------------------------------------------------

COLLECT = r'''
import json, os, shutil, sys, types, glob, importlib, importlib.util, pickle
from unittest import mock
peers, out = sys.argv[1], sys.argv[2]
manifest = []

def add(suite, path, label, source):
    manifest.append({"suite": suite, "file": os.path.relpath(path, out), "label": label, "source": source})

# picklescan: its committed test files, labelled later by its own verdict.
for path in sorted(glob.glob(f"{peers}/picklescan/tests/data*/*")):
    dest = f"{out}/picklescan/{os.path.basename(os.path.dirname(path))}_{os.path.basename(path)}"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy(path, dest)
    add("picklescan", dest, "by-picklescan", "tests/" + os.path.relpath(path, f"{peers}/picklescan/tests"))

# modelscan: its fixtures, called with a stand-in tmp_path_factory; the
# TensorFlow/Keras imports are stubbed (no Keras files are used here).
tf = mock.MagicMock(); keras = mock.MagicMock(); keras.Model = type("Model", (), {})
sys.modules.update({"tensorflow": tf, "tf_keras": keras})
# modelscan itself is only imported for its scanner, not needed to write
# the files: every modelscan.* import is a stand-in.
import importlib.abc, importlib.machinery
class StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "modelscan" or name.startswith("modelscan."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        module = mock.MagicMock(); module.__path__ = []; module.__spec__ = spec
        return module
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, StandIns())
sys.path.insert(0, f"{peers}/modelscan/tests")
os.chdir(f"{peers}/modelscan/tests")
spec = importlib.util.spec_from_file_location("test_modelscan", f"{peers}/modelscan/tests/test_modelscan.py")
ms = importlib.util.module_from_spec(spec); sys.modules["test_modelscan"] = ms; spec.loader.exec_module(ms)
class Factory:
    def __init__(self, base): self.base = base
    def mktemp(self, name):
        path = f"{self.base}/{name}"; os.makedirs(path, exist_ok=True); return path
factory = Factory(f"{out}/modelscan")
for fixture in ["zip_file_path", "pytorch_file_path", "file_path", "numpy_file_path"]:
    function = getattr(ms, fixture)
    function = getattr(function, "__wrapped__", None) or getattr(function, "__pytest_wrapped__").obj
    try:
        folder = function(factory) if fixture != "numpy_file_path" else function(factory)
    except Exception as error:
        print(f"modelscan fixture {fixture}: {error!r}", file=sys.stderr); continue
for path in sorted(glob.glob(f"{out}/modelscan/**/*", recursive=True)):
    if os.path.isdir(path): continue
    name = os.path.basename(path)
    label = "malicious" if name.startswith(("malicious", "unsafe", "bad_")) or name == "test.zip" else "benign"
    if name == "bad_pytorch.pt": label = "benign"  # a PNG: modelscan expects an error, not an issue
    if name == "password_protected.zip": label = "benign"
    add("modelscan", path, label, "tests/test_modelscan.py fixtures")

# fickling: each bypass test's pickles, recorded as check_safety sees them.
sys.path.insert(0, f"{peers}/fickling")
sys.path.insert(0, f"{peers}/fickling/test")
for module in [m for m in list(sys.modules) if m == "fickling" or m.startswith("fickling.")]:
    del sys.modules[module]
import fickling.analysis as analysis
import test_bypasses
# The bytes a test parsed, by the object fickling made of them: a test that
# hand-assembles a stream (frame tricks) must be recorded as written, not
# as fickling would write it again.
raw_of = {}
real_load = test_bypasses.Pickled.load
def load_recording(data, *args, **kwargs):
    parsed = real_load(data, *args, **kwargs)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw_of[id(parsed)] = bytes(data)
    return parsed
test_bypasses.Pickled.load = staticmethod(load_recording)
recorded = []
real = analysis.check_safety
def recording(pickled, *args, **kwargs):
    result = real(pickled, *args, **kwargs)
    # The test asserts this verdict (it passes at the commit read), so it
    # is the suite's label for the file.
    malicious = result.severity > analysis.Severity.LIKELY_SAFE
    data = raw_of.get(id(pickled)) or (pickled.dumps() if hasattr(pickled, "dumps") else bytes(pickled))
    recorded.append((data, malicious))
    return result
test_bypasses.check_safety = recording
os.makedirs(f"{out}/fickling", exist_ok=True)
case = test_bypasses.TestBypasses()
for name in sorted(n for n in dir(case) if n.startswith("test_")):
    recorded.clear()
    try:
        getattr(case, name)()
    except Exception as error:
        print(f"fickling {name}: {error!r}", file=sys.stderr)
    for i, (data, malicious) in enumerate(recorded):
        path = f"{out}/fickling/{name}_{i}.pkl"
        open(path, "wb").write(data)
        add("fickling", path, "malicious" if malicious else "benign", f"test/test_bypasses.py::{name}")

# safetensors attacks: each *_create.py run in a scratch folder.
os.makedirs(f"{out}/safetensors", exist_ok=True)
for script, made, label in [
    ("torch_ace_create.py", "torch_ace.pt", "malicious"),
    ("safetensors_abuse_attempt_1.py", "safetensors_abuse_attempt_1.safetensors", "refused"),
    ("safetensors_abuse_attempt_3.py", "safetensors_abuse_attempt_2.safetensors", "refused"),
]:
    scratch = f"{out}/safetensors/{script[:-3]}"
    os.makedirs(scratch, exist_ok=True)
    os.chdir(scratch)
    source = open(f"{peers}/safetensors/attacks/{script}").read()
    # Stop after writing the file: the scripts load it right after.
    source = source.replace("test = load_file(filename)", "pass")
    try:
        exec(compile(source, script, "exec"), {"__name__": "__main__"})
    except Exception as error:
        print(f"safetensors {script}: {error!r}", file=sys.stderr)
    if os.path.exists(made):
        add("safetensors", f"{scratch}/{made}", label, f"attacks/{script}")
json.dump(manifest, open(f"{out}/manifest.json", "w"), indent=1)
print(len(manifest), "files")
'''

# ---------------------------------------------------------------------------
# Verdict workers: one JSON line per file, resumable if a file kills them.
# ---------------------------------------------------------------------------

PEERS = r'''
import json, logging, sys, io, contextlib
logging.disable(logging.CRITICAL)
from picklescan.scanner import scan_file_path
import fickling
from fickling.analysis import Severity
from modelscan.modelscan import ModelScan
for line in sys.stdin:
    path = line.strip()
    verdict = {"file": path}
    try:
        r = scan_file_path(path)
        verdict["picklescan"] = "flagged" if r.issues_count > 0 else ("error" if r.scan_err else "clean")
    except Exception as error:
        verdict["picklescan"] = "error"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            r = fickling.scan_file(path, graceful=True)
        verdict["fickling"] = "flagged" if r.severity > Severity.LIKELY_SAFE else ("error" if r.errors else "clean")
    except Exception:
        verdict["fickling"] = "error"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            r = ModelScan().scan(path)
        issues = len(r.get("issues", []))
        errors = len(r.get("errors", []))
        verdict["modelscan"] = "flagged" if issues else ("error" if errors else "clean")
    except Exception:
        verdict["modelscan"] = "error"
    print(json.dumps(verdict), flush=True)
'''

TORCH = r'''
import json, resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
warnings.filterwarnings("ignore")
import torch
for line in sys.stdin:
    path = line.strip()
    try:
        torch.load(path, weights_only=True, map_location="cpu")
        verdict = "loads"
    except Exception as error:
        verdict = "refuses: " + str(error).splitlines()[0][:160] if str(error) else "refuses"
    print(json.dumps({"file": path, "torch": verdict}), flush=True)
'''


def run_worker(python, code, paths, key):
    """Feed paths to a worker; restart it past a file that kills it."""
    results = {}
    pending = list(paths)
    while pending:
        proc = subprocess.run(
            [python, "-c", code],
            input="\n".join(pending) + "\n",
            capture_output=True,
            text=True,
            timeout=3600,
        )
        for line in proc.stdout.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            results[row["file"]] = row
        done = [p for p in pending if p in results]
        rest = [p for p in pending if p not in results]
        if not rest:
            break
        # The first file without an answer killed the worker.
        results[rest[0]] = {"file": rest[0], key: "crashed"}
        pending = rest[1:]
        if not done and proc.returncode == 0:
            break
    return results


def ckptcheck_verdict(binary, path):
    proc = subprocess.run(
        [binary, "inspect", "--json", path], capture_output=True, text=True, timeout=120
    )
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        data = {}
    error = data.get("error") or {}
    kind = error.get("kind")
    if proc.returncode == 2 and not kind:
        # A plain error: the kind is in the JSON error object on stdout or
        # the first line of stderr.
        kind = data.get("kind")
    audit = data.get("pickle_audit") or {}
    torch_loads = (
        proc.returncode == 0
        and data.get("format", "").startswith("pytorch")
        and data.get("format") != "pytorch-sharded"
        and audit.get("weights_only_loads", False)
    )
    return {
        "exit": proc.returncode,
        "kind": kind or ("" if proc.returncode == 0 else "error"),
        "flagged": kind == "unsafe_pickle",
        "severity": audit.get("severity"),
        "torch_loads": torch_loads,
        "message": (proc.stderr.strip().splitlines() or [""])[0][:300],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", required=True)
    parser.add_argument("--peer-python", default="/opt/peers/bin/python")
    parser.add_argument("--torch-python", default="/opt/fixenv/bin/python")
    parser.add_argument("--ckptcheck", default=str(ROOT / "target" / "release" / "ckptcheck"))
    parser.add_argument("--skip-collect", action="store_true")
    args = parser.parse_args()
    peers = str(Path(args.peers).resolve())
    if not args.skip_collect:
        if OUT.exists():
            subprocess.run(["rm", "-rf", str(OUT)], check=True)
        OUT.mkdir(parents=True)
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
            script.write(COLLECT)
        subprocess.run([args.torch_python, script.name, peers, str(OUT)], check=True)
        subprocess.run(
            [args.torch_python, str(ROOT / "bench" / "gguf_handcrafted.py"), str(OUT / "ggml")],
            check=True,
        )
    manifest = json.load(open(OUT / "manifest.json"))
    ggml = json.load(open(OUT / "ggml" / "expected.json"))
    paths = [str(OUT / row["file"]) for row in manifest]
    peer = run_worker(args.peer_python, PEERS, paths, "picklescan")
    torch = run_worker(args.torch_python, TORCH, paths, "torch")
    rows = []
    for row, path in zip(manifest, paths):
        mine = ckptcheck_verdict(args.ckptcheck, path)
        theirs = peer.get(path, {})
        label = row["label"]
        if label == "by-picklescan":
            label = "malicious" if theirs.get("picklescan") == "flagged" else "benign"
            if path.endswith(".7z"):
                label = "malicious"
        torch_verdict = torch.get(path, {}).get("torch", "crashed")
        rows.append({
            **row,
            "label": label,
            "ckptcheck": mine,
            "picklescan": theirs.get("picklescan"),
            "fickling": theirs.get("fickling"),
            "modelscan": theirs.get("modelscan"),
            "torch": torch_verdict,
        })
    gguf_rows = []
    for case in ggml:
        mine = ckptcheck_verdict(args.ckptcheck, str(OUT / "ggml" / case["file"]))
        gguf_rows.append({**case, "ckptcheck_accepts": mine["exit"] == 0, "message": mine["message"]})
    json.dump({"pickles": rows, "gguf": gguf_rows}, open(OUT / "results.json", "w"), indent=1)
    report(rows, gguf_rows)


def report(rows, gguf_rows):
    tools = ["ckptcheck", "picklescan", "modelscan", "fickling"]
    def flagged(row, tool):
        return row["ckptcheck"]["flagged"] if tool == "ckptcheck" else row[tool] == "flagged"
    pickle_rows = [r for r in rows if r["label"] in ("malicious", "benign")]
    print(f"\n{len(pickle_rows)} pickle-suite files ({sum(r['label'] == 'malicious' for r in pickle_rows)} malicious)\n")
    print("| suite | files | malicious | " + " | ".join(f"{t} detects | {t} false alarms" for t in tools) + " |")
    print("|---|---|---|" + "---|---|" * len(tools))
    for suite in ["picklescan", "modelscan", "fickling", "safetensors", "all"]:
        part = [r for r in pickle_rows if suite == "all" or r["suite"] == suite]
        if not part:
            continue
        bad = [r for r in part if r["label"] == "malicious"]
        good = [r for r in part if r["label"] == "benign"]
        cells = []
        for tool in tools:
            cells.append(f"{sum(flagged(r, tool) for r in bad)}/{len(bad)}")
            cells.append(f"{sum(flagged(r, tool) for r in good)}/{len(good)}")
        print(f"| {suite} | {len(part)} | {len(bad)} | " + " | ".join(cells) + " |")
    missed = [r for r in pickle_rows if r["label"] == "malicious" and not r["ckptcheck"]["flagged"]]
    false_alarms = [r for r in pickle_rows if r["label"] == "benign" and r["ckptcheck"]["flagged"]]
    peer_only = [
        r for r in pickle_rows
        if r["label"] == "malicious" and not r["ckptcheck"]["flagged"]
        and any(r[t] == "flagged" for t in tools[1:])
    ]
    agree = [r for r in rows if r["ckptcheck"]["torch_loads"] == (r["torch"] == "loads")]
    print(f"\nckptcheck missed {len(missed)} malicious, {len(false_alarms)} false alarms; "
          f"malicious files a peer flags and ckptcheck does not: {len(peer_only)}")
    print(f"agreement with torch.load(weights_only=True): {len(agree)}/{len(rows)} files")
    for title, part in [("missed", missed), ("false alarm", false_alarms), ("peer only", peer_only)]:
        for r in part:
            print(f"  {title}: {r['suite']} {r['file']}: {r['ckptcheck']['kind']} {r['ckptcheck']['message'][:160]}")
    for r in rows:
        if r not in agree:
            print(f"  torch disagrees: {r['file']}: torch {r['torch'][:100]}; ckptcheck predicts "
                  f"{'loads' if r['ckptcheck']['torch_loads'] else 'refuses'}")
    refused = [r for r in rows if r["label"] == "refused"]
    for r in refused:
        print(f"  safetensors attack {r['file']}: ckptcheck exit {r['ckptcheck']['exit']} "
              f"({r['ckptcheck']['kind']}): {r['ckptcheck']['message'][:120]}")
    same = [g for g in gguf_rows if g["ckptcheck_accepts"] == g["ggml_accepts"]]
    print(f"\nggml handcrafted GGUF: ckptcheck agrees with ggml on {len(same)}/{len(gguf_rows)} files")
    for g in gguf_rows:
        if g not in same:
            print(f"  disagrees: {g['file']}: ggml {'accepts' if g['ggml_accepts'] else 'refuses'}; "
                  f"ckptcheck: {g['message'][:140]}")


if __name__ == "__main__":
    sys.exit(main())
