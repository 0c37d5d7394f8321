"""ggml's handcrafted GGUF test files, written the way llama.cpp's
tests/test-gguf.cpp (`get_handcrafted_file`) writes them, with the verdict
ggml's reader (`gguf_init_from_file_impl`, ggml/src/gguf.cpp) gives each:
bad magic, version 0, 1 and 4, lying tensor and key/value counts, huge or
empty keys, unknown value types, duplicate keys, alignment that is not a
power of two or not a UINT32, bools that are neither 0 nor 1, strings that
are not UTF-8, tensor names of 64 bytes or more, five dimensions, negative
and overflowing shapes, unknown ggml types, offsets that are not the running
padded sum, duplicate names, a custom alignment of 1, a data section one
byte short, and a total size that overflows; every ggml type that has a
size, the new NVFP4, Q1_0 and Q2_0 included.

The test draws 100 random tensors with dimensions up to 10 and random key
types from a seed; this port draws 8 tensors with dimensions up to 3, plus one each of
MXFP4, NVFP4, Q1_0 and Q2_0, (so
the committed files stay small) and every key type, from its own seeded
random generator: the rules each file exercises are the same.

Its verdict is ggml's when it reads the data too (`gguf_init_from_file`
with a context, as a loader must): a file whose tensors have no data
behind them is refused there, as ckptcheck refuses it (`truncated`), so the
TENSORS_* files, which test-gguf reads header-only, are expected refused
unless their tensors are empty.

Usage: python bench/gguf_handcrafted.py OUT_DIR (writes OUT_DIR/*.gguf and
OUT_DIR/expected.json). tests/fixtures/gguf_ggml was made with it;
tests/gguf_ggml.rs checks ckptcheck against expected.json.
"""

import json
import random
import struct
import sys
from pathlib import Path

OFFSET_HAS_KV, OFFSET_HAS_TENSORS, OFFSET_HAS_DATA = 1000, 2000, 3000
CASES = {
    "HEADER_BAD_MAGIC": 10, "HEADER_BAD_VERSION_0": 15, "HEADER_BAD_VERSION_1": 20,
    "HEADER_BAD_VERSION_FUTURE": 30, "HEADER_BAD_N_TENSORS": 40, "HEADER_BAD_N_KV": 50,
    "HEADER_EMPTY": 800,
    "KV_BAD_KEY_SIZE": 1010, "KV_EMPTY_KEY": 1015, "KV_BAD_TYPE": 1020,
    "KV_DUPLICATE_KEY": 1040, "KV_BAD_ALIGN": 1050, "KV_WRONG_TYPE_ALIGN": 1055,
    "KV_SUCCESS": 1800,
    "TENSORS_BAD_NAME_SIZE": 2010, "TENSORS_BAD_N_DIMS": 2020, "TENSORS_BAD_SHAPE": 2030,
    "TENSORS_ZERO_DIM": 2035, "TENSORS_NE_TOO_BIG": 2040, "TENSORS_NBYTES_TOO_BIG": 2045,
    "TENSORS_BAD_TYPE": 2050, "TENSORS_BAD_OFFSET": 2060, "TENSORS_DUPLICATE_NAME": 2070,
    "TENSORS_BAD_ALIGN": 2075, "TENSORS_INCONSISTENT_ALIGN": 2080, "TENSORS_SUCCESS": 2800,
    "TENSORS_CUSTOM_ALIGN": 2810,
    "DATA_NOT_ENOUGH_DATA": 3010, "DATA_BAD_ALIGN": 3015, "DATA_INCONSISTENT_ALIGN": 3020,
    "DATA_MEM_SIZE_OVERFLOW": 3030, "DATA_SUCCESS": 3800, "DATA_CUSTOM_ALIGN": 3810,
}
# ggml_type id: (block size, type size); ggml/src/ggml.c type_traits. Ids
# 4, 5, 31-33 and 36-38 were removed: size 0, which ggml refuses.
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
    39: (32, 17), 40: (64, 36), 41: (128, 18), 42: (64, 18),
}
GGML_TYPE_COUNT = 43
GGML_TYPE_I8, GGML_TYPE_I64 = 24, 27
# gguf_type: size in bytes of one value (8 = string, 9 = array).
GGUF_TYPE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGUF_TYPE_STRING, GGUF_TYPE_ARRAY, GGUF_TYPE_COUNT = 8, 9, 13
GGUF_TYPE_UINT32, GGUF_TYPE_INT32 = 4, 5
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
INT64_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1


def pad(n, alignment):
    return (n + alignment - 1) // alignment * alignment


def expect_ggml_accepts(hft):
    """test-gguf.cpp `expect_context_not_null`."""
    if hft == CASES["TENSORS_ZERO_DIM"]:
        return True
    if hft < OFFSET_HAS_KV:
        return hft >= CASES["HEADER_EMPTY"]
    if hft < OFFSET_HAS_TENSORS:
        return hft >= CASES["KV_SUCCESS"]
    if hft < OFFSET_HAS_DATA:
        return hft >= CASES["TENSORS_SUCCESS"]
    return hft >= CASES["DATA_SUCCESS"]


def tensor_configs(rng):
    configs = []
    while len(configs) < 8:
        ggml_type = rng.randrange(GGML_TYPE_COUNT)
        if ggml_type not in GGML_TYPES:
            continue
        block = GGML_TYPES[ggml_type][0]
        shape = [rng.randint(1, 3) * block, 1, 1, 1]
        for i in range(1, rng.randint(1, MAX_DIMS)):
            shape[i] = rng.randint(1, 3)
        configs.append((ggml_type, shape))
    # And one of each of the newest types, whatever the draw.
    for ggml_type in (39, 40, 41, 42):
        configs.append((ggml_type, [GGML_TYPES[ggml_type][0] * rng.randint(1, 3), 2, 1, 1]))
    return configs


def kv_types(rng):
    kinds = [(t, None) for t in range(GGUF_TYPE_COUNT) if t != GGUF_TYPE_ARRAY]
    kinds += [(GGUF_TYPE_ARRAY, t) for t in range(GGUF_TYPE_COUNT) if t != GGUF_TYPE_ARRAY]
    rng.shuffle(kinds)
    return kinds


def handcrafted(seed, hft):
    rng = random.Random(seed)
    out = bytearray()
    alignment = DEFAULT_ALIGNMENT
    out += b"FUGG" if hft == CASES["HEADER_BAD_MAGIC"] else b"GGUF"
    version = {CASES["HEADER_BAD_VERSION_0"]: 0, CASES["HEADER_BAD_VERSION_1"]: 1,
               CASES["HEADER_BAD_VERSION_FUTURE"]: 4}.get(hft, 3)
    out += struct.pack("<I", version)
    configs = tensor_configs(rng) if hft >= OFFSET_HAS_TENSORS else []
    if hft == CASES["DATA_MEM_SIZE_OVERFLOW"]:
        configs = [(GGML_TYPE_I8, [0x7FFFFFFFFFFFFFC0, 1, 1, 1])] * 2
    out += struct.pack("<Q", SIZE_MAX if hft == CASES["HEADER_BAD_N_TENSORS"] else len(configs))
    kinds = kv_types(rng) if hft >= OFFSET_HAS_KV else []
    custom_alignment = hft in (CASES["KV_BAD_ALIGN"], CASES["KV_WRONG_TYPE_ALIGN"],
                               CASES["TENSORS_BAD_ALIGN"], CASES["TENSORS_CUSTOM_ALIGN"],
                               CASES["DATA_BAD_ALIGN"], CASES["DATA_CUSTOM_ALIGN"])
    n_kv = len(kinds) + (1 if custom_alignment else 0)
    out += struct.pack("<Q", SIZE_MAX if hft == CASES["HEADER_BAD_N_KV"] else n_kv)

    def pad_file():
        while len(out) % alignment:
            out.append(0)

    if hft < OFFSET_HAS_KV:
        pad_file()
        return bytes(out)
    for i, (kind, element) in enumerate(kinds):
        bad_type = hft == CASES["KV_BAD_TYPE"]
        if bad_type:
            kind, element = GGUF_TYPE_COUNT, GGUF_TYPE_COUNT
        key = b"" if hft == CASES["KV_EMPTY_KEY"] else \
            f"my_key_{i // 2 if hft == CASES['KV_DUPLICATE_KEY'] else i}".encode()
        out += struct.pack("<Q", SIZE_MAX if hft == CASES["KV_BAD_KEY_SIZE"] else len(key)) + key
        out += struct.pack("<i", kind)
        # Random bytes, as the test's: bools are any byte, strings any
        # bytes but NUL (ggml keeps them as they are, UTF-8 or not).
        data = bytearray(rng.getrandbits(8) for _ in range(64))
        if kind == GGUF_TYPE_STRING or element == GGUF_TYPE_STRING:
            data = bytearray(b | 1 for b in data)
        if kind == GGUF_TYPE_STRING:
            n = rng.randrange(64)
            out += struct.pack("<Q", n) + data[:n]
            continue
        if kind == GGUF_TYPE_ARRAY:
            out += struct.pack("<i", element)
            if element == GGUF_TYPE_STRING:
                count = rng.randrange(17)
                out += struct.pack("<Q", count)
                for j in range(count):
                    n = rng.randrange(5)
                    out += struct.pack("<Q", n) + data[4 * j:4 * j + n]
                continue
            size = GGUF_TYPE_SIZES[element]
            count = rng.randrange(64) // size
            out += struct.pack("<Q", count) + data[:count * size]
            continue
        out += data[:1 if bad_type else GGUF_TYPE_SIZES[kind]]
    if custom_alignment:
        key = b"general.alignment"
        out += struct.pack("<Q", len(key)) + key
        out += struct.pack("<i", GGUF_TYPE_INT32 if hft == CASES["KV_WRONG_TYPE_ALIGN"]
                           else GGUF_TYPE_UINT32)
        alignment = 1 if expect_ggml_accepts(hft) else 13
        out += struct.pack("<I", alignment)
    if hft < OFFSET_HAS_TENSORS:
        pad_file()
        return bytes(out)
    if hft in (CASES["TENSORS_INCONSISTENT_ALIGN"], CASES["DATA_INCONSISTENT_ALIGN"]):
        alignment = 1
    offset = 0
    for i, (ggml_type, shape) in enumerate(configs):
        if hft == CASES["TENSORS_NBYTES_TOO_BIG"]:
            ggml_type = GGML_TYPE_I64
        block, type_size = GGML_TYPES[ggml_type]
        name = "my_tensor" + ("" if hft == CASES["TENSORS_DUPLICATE_NAME"] else f"_{i}")
        if hft == CASES["TENSORS_BAD_NAME_SIZE"]:
            name += "_with_a_very_long_name_which_is_longer_than_what_is_allowed_for_ggml_tensors"
        out += struct.pack("<Q", len(name)) + name.encode()
        big = hft in (CASES["TENSORS_NE_TOO_BIG"], CASES["TENSORS_NBYTES_TOO_BIG"])
        n_dims = 2 if big else 1
        for d in range(MAX_DIMS - 1, 0, -1):
            if shape[d] != 1:
                n_dims = d + 1
                break
        if hft == CASES["TENSORS_ZERO_DIM"]:
            n_dims = 2
        out += struct.pack("<I", MAX_DIMS + 1 if hft == CASES["TENSORS_BAD_N_DIMS"] else n_dims)
        if hft == CASES["TENSORS_BAD_SHAPE"]:
            dims = [-1] * n_dims
        elif hft == CASES["TENSORS_ZERO_DIM"]:
            dims = [shape[0], 0]
        elif hft == CASES["TENSORS_NE_TOO_BIG"]:
            dims = [4 * (2**31 - 1)] * n_dims
        elif hft == CASES["TENSORS_NBYTES_TOO_BIG"]:
            big_ne = SIZE_MAX // type_size
            dims = [pad(int(1.01 * big_ne ** (1 / n_dims)) + 1, block)] * n_dims
        else:
            dims = shape[:n_dims]
        out += b"".join(struct.pack("<q", d) for d in dims)
        out += struct.pack("<i", GGML_TYPE_COUNT if hft == CASES["TENSORS_BAD_TYPE"] else ggml_type)
        out += struct.pack("<Q", SIZE_MAX if hft == CASES["TENSORS_BAD_OFFSET"] else offset)
        ne = 1
        for d in shape[:n_dims]:
            ne *= d
        if hft == CASES["TENSORS_ZERO_DIM"]:
            ne = 0
        offset += pad(ne // block * type_size, alignment)
    pad_file()
    if hft >= OFFSET_HAS_DATA:
        nbytes = offset
        if hft == CASES["DATA_NOT_ENOUGH_DATA"]:
            nbytes -= 1
        if hft == CASES["DATA_MEM_SIZE_OVERFLOW"]:
            nbytes = 32
        out += bytes(i % 256 for i in range(nbytes))
    return bytes(out)


def verdict(hft):
    """ggml's verdict when it reads the data too (see the module doc)."""
    accepts = expect_ggml_accepts(hft)
    header_only = OFFSET_HAS_TENSORS <= hft < OFFSET_HAS_DATA
    if accepts and header_only and hft != CASES["TENSORS_ZERO_DIM"]:
        return False, "its tensors have no data behind them (test-gguf reads it header-only)"
    return accepts, "test-gguf.cpp expect_context_not_null"


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    expected = []
    for name, hft in CASES.items():
        path = out / f"{name.lower()}.gguf"
        path.write_bytes(handcrafted(20261202, hft))
        accepts, why = verdict(hft)
        expected.append({"file": path.name, "case": name, "ggml_accepts": accepts, "why": why})
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{len(expected)} files in {out}")


if __name__ == "__main__":
    main()
