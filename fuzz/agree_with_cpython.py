"""Does ckptcheck's pickle machine see every global CPython's unpickler
reaches? For each input of the pickle fuzz corpus (plus the pickle
fixtures and their mutants), CPython's `pickle.Unpickler` (the C one that
`pickle.load` uses) runs with a `find_class` that records each name it is
asked for and hands back an inert stand-in (nothing is imported; calling the
stand-in records nothing and runs nothing), and a `persistent_load` that does
the same, reading pickle after pickle as a loader that calls `pickle.load`
again would. ckptcheck's machine reads the same bytes
(`examples/pickle_globals.rs`).

They agree on a file when every global CPython reached is one the machine
names (after Python 2 name mapping), or when the machine refuses the stream
as malformed (it fails closed: the audit calls the file unsafe). A file
where CPython reaches a global the machine does not name is a disagreement,
printed with both sides; the script exits 1 if there is any.

    cargo build --release --example pickle_globals
    python3 fuzz/agree_with_cpython.py [--mutants N] [CORPUS_DIR_OR_FILE...]

Without arguments it reads fuzz/corpus/pickle (made by fuzz/run.sh) when it
exists, and always the fixtures' pickles (tests/fixtures/pickle_files,
pickle_opcodes, hostile/*.pkl and every torch zip's data.pkl) with N (default
3000) seeded mutants of them. Not a test: CI does not run it.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"

CPYTHON = r'''
import _compat_pickle, io, json, pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
sys.setrecursionlimit(10000)

class Inert:
    """What every global and persistent id becomes: accepts anything."""
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return Inert()
    def __setstate__(self, state): pass
    def __reduce__(self): return (Inert, ())
    def append(self, item): pass
    def extend(self, items): pass
    def __setitem__(self, key, value): pass
    def add(self, item): pass

def normal(module, name):
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name

class Recording(pickle.Unpickler):
    def __init__(self, file, reached):
        super().__init__(file)
        self.reached = reached
    def find_class(self, module, name):
        self.reached.add(normal(module, name))
        return Inert
    def persistent_load(self, pid):
        return Inert()

for line in sys.stdin:
    path = line.strip()
    data = open(path, "rb").read()
    reached, outcome, pickles = set(), "ok", 0
    stream = io.BytesIO(data)
    try:
        while pickles < 16 and stream.tell() < len(data):
            Recording(stream, reached).load()
            pickles += 1
    except Exception as error:
        outcome = type(error).__name__
    print(json.dumps({"file": path, "outcome": outcome, "pickles": pickles,
                      "globals": sorted(reached)}), flush=True)
'''


def seeds():
    files = []
    for folder in ["pickle_files", "pickle_opcodes"]:
        files += [p for p in (FIX / folder).iterdir() if p.suffix in (".pkl", ".pt", ".joblib", ".npy")]
    files += sorted((FIX / "hostile").glob("*.pkl"))
    out = []
    scratch = Path(tempfile.mkdtemp(prefix="agree-"))
    for path in files:
        data = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith("data.pkl"):
                        data = archive.read(name)
                        break
        if path.suffix == ".npy" and b"\x80" in data:
            data = data[data.index(b"\x80"):]
        target = scratch / f"seed_{path.parent.name}_{path.name}"
        target.write_bytes(data)
        out.append(target)
    for path in sorted((FIX / "formats").glob("*.pt")):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith("data.pkl"):
                        target = scratch / f"seed_formats_{path.stem}.pkl"
                        target.write_bytes(archive.read(name))
                        out.append(target)
    return out, scratch


OPCODES = b"().012NIJKLMPQRSTUVXabcdeghijlmopqrstu}\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"


def mutants(seed_files, count, scratch):
    rng = random.Random(20261202)
    datas = [p.read_bytes() for p in seed_files]
    out = []
    for i in range(count):
        data = bytearray(rng.choice(datas))
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(5)
            at = rng.randrange(len(data) + 1)
            if kind == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif kind == 1:
                data[at:at] = bytes([rng.choice(OPCODES)])
            elif kind == 2 and data:
                del data[at:at + rng.randint(1, 8)]
            elif kind == 3:
                other = rng.choice(datas)
                start = rng.randrange(len(other))
                data[at:at] = other[start:start + rng.randint(1, 64)]
            else:
                data[at:at] = data[max(0, at - 16):at]
        target = scratch / f"mutant_{i:05}.pkl"
        target.write_bytes(bytes(data))
        out.append(target)
    return out


def run_lines(command, paths, stdin=True):
    if stdin:
        proc = subprocess.run(command, input="\n".join(map(str, paths)) + "\n",
                              capture_output=True, text=True, timeout=3600)
    else:
        proc = subprocess.run(command + [str(p) for p in paths], capture_output=True, text=True,
                              timeout=3600)
    rows = {}
    for line in proc.stdout.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row["file"]] = row
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--mutants", type=int, default=3000)
    parser.add_argument("--machine", default=str(ROOT / "target" / "release" / "examples" / "pickle_globals"))
    args = parser.parse_args()
    seed_files, scratch = seeds()
    corpus = []
    sources = [Path(p) for p in args.paths] or [ROOT / "fuzz" / "corpus" / "pickle"]
    for source in sources:
        if source.is_dir():
            corpus += sorted(p for p in source.iterdir() if p.is_file())
        elif source.is_file():
            corpus.append(source)
    corpus += seed_files + mutants(seed_files, args.mutants, scratch)
    python = run_lines([sys.executable, "-c", CPYTHON], corpus)
    machine = {}
    for start in range(0, len(corpus), 500):
        machine.update(run_lines([args.machine], corpus[start:start + 500], stdin=False))
    agree, superset, fail_closed, disagree = 0, 0, 0, []
    for path in map(str, corpus):
        theirs = {tuple(g) for g in python.get(path, {}).get("globals", [])}
        mine_row = machine.get(path, {"globals": [], "outcome": "missing"})
        mine = {tuple(g) for g in mine_row["globals"]}
        if theirs <= mine:
            agree += 1
            superset += mine != theirs
        elif mine_row["outcome"] not in ("ok", "Truncated"):
            fail_closed += 1
        else:
            disagree.append((path, sorted(theirs - mine), mine_row["outcome"], python.get(path, {}).get("outcome")))
    print(f"{len(corpus)} inputs ({len(seed_files)} fixture pickles, {args.mutants} mutants, "
          f"{len(corpus) - len(seed_files) - args.mutants} from the corpus)")
    print(f"  the machine names every global CPython reached: {agree} "
          f"(and more than CPython reached, having read past where CPython stopped: {superset})")
    print(f"  CPython reached a global the machine refused to read past (malformed, fails closed): {fail_closed}")
    print(f"  disagreements (CPython reached a global the machine did not name): {len(disagree)}")
    for path, missing, mine, theirs in disagree[:20]:
        print(f"    {path}: CPython reached {missing}; machine {mine}, CPython {theirs}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
