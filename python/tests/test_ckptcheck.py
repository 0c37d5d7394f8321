"""The Python package against the command line and against the real
libraries: every fixture's JSON equals the CLI's, and a check against a live
module (torch, transformers, cn_clip, built from small configs) says what
``load_state_dict`` really does, PyTorch's error text verbatim.

Run by ``cargo xtask test`` (tier "python"), which builds the wheel with
maturin, installs it in a venv with the libraries, and sets CKPTCHECK_CLI to
the command line built by the native tier.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import ckptcheck

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
CLI = os.environ.get("CKPTCHECK_CLI") or str(ROOT / "target" / "debug" / "ckptcheck")


def cli_json(*args):
    out = subprocess.run([CLI, *args, "--json"], capture_output=True, check=False)
    return json.loads(out.stdout)


def python_json(function, *args, **kwargs):
    """What the package returns, or its error as the CLI prints it."""
    try:
        return function(*args, **kwargs)
    except ckptcheck.Error as error:
        return {"error": error.info}


def every_fixture_file():
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file())


def test_the_fixture_set_is_there():
    # Guards the equality test below against passing on nothing.
    assert len(every_fixture_file()) > 200


def test_inspect_equals_the_cli_json_on_every_fixture():
    files = every_fixture_file()
    differ = []
    for path in files:
        expected = cli_json("inspect", str(path))
        got = python_json(ckptcheck.inspect, path)
        if got != expected:
            differ.append(str(path.relative_to(ROOT)))
    assert differ == [], f"{len(differ)} of {len(files)} differ: {differ[:10]}"


def test_scan_equals_the_cli_json_on_the_scan_fixtures():
    files = sorted(p for p in (FIXTURES / "scan").iterdir() if p.suffix in {".pt", ".safetensors", ".gguf"})
    assert files
    for path in files:
        assert python_json(ckptcheck.scan, path) == cli_json("scan", str(path)), path


def test_check_against_a_preset_equals_the_cli_report():
    path = FIXTURES / "cn_clip" / "clip_cn_vit-l-14-336.shapes.pt"
    preset = "ViT-B-16@RoBERTa-wwm-ext-base-chinese"
    report = ckptcheck.check(path, model=preset, loader="cn-clip")
    assert report.to_dict() == cli_json("check", str(path), "--config", preset, "--loader", "cn-clip")
    assert not report.loads
    assert report.verdict == "wont-load"
    assert len(report.size_mismatches) == 153
    assert "ViT-L-14-336" in report.fix["summary"]
    assert json.loads(report.to_json()) == report.to_dict()
    assert "Won" in report._repr_html_() and "Size mismatches (153)" in report._repr_html_()


class Small(torch.nn.Module):
    def __init__(self, width=8, classes=3):
        super().__init__()
        self.embed = torch.nn.Embedding(10, width)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(2))
        self.norm = torch.nn.BatchNorm1d(width)
        self.head = torch.nn.Linear(width, classes)
        self.register_buffer("scale", torch.ones(1), persistent=False)


def torch_load_error(module, path):
    try:
        module.load_state_dict(torch.load(path, weights_only=True))
    except RuntimeError as error:
        return str(error)
    return None


@pytest.mark.parametrize(
    "saved, model",
    [
        (dict(width=8, classes=3), dict(width=8, classes=3)),
        (dict(width=8, classes=3), dict(width=8, classes=5)),
        (dict(width=8, classes=3), dict(width=16, classes=3)),
    ],
)
def test_check_against_a_live_module_says_what_load_state_dict_says(tmp_path, saved, model):
    path = tmp_path / "small.pt"
    torch.save(Small(**saved).state_dict(), path)
    module = Small(**model)
    report = ckptcheck.check(path, model=module)
    expected = torch_load_error(module, path)
    assert report.loads == (expected is None)
    assert report.pytorch_error == expected
    result = Small(**model).load_state_dict(torch.load(path, weights_only=True), strict=False) if report.loads else None
    if result is not None:
        assert report.missing_keys == result.missing_keys
        assert report.unexpected_keys == result.unexpected_keys


def test_a_module_on_the_meta_device_is_enough_and_no_tensor_data_is_read(tmp_path):
    path = tmp_path / "big.pt"
    torch.save(Small(width=1024, classes=1000).state_dict(), path)
    with torch.device("meta"):
        module = Small(width=1024, classes=1000)
    report = ckptcheck.check(path, model=module)
    assert report.loads
    size = path.stat().st_size
    assert size > 4_000_000
    # The listing, never the weights.
    assert report.to_dict()["bytes_read"] < size / 100


def test_a_pickle_that_would_run_code_is_reported_not_run(tmp_path):
    path = FIXTURES / "formats" / "evil_os_system.pt"
    listing = ckptcheck.inspect(path)
    assert listing["error"]["kind"] == "unsafe_pickle"
    assert "posix.system" in listing["error"]["message"] or "os.system" in listing["error"]["message"]


def test_transformers_models_from_small_configs(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(tmp_path / "bert")
    weights = tmp_path / "bert" / "model.safetensors"
    # The same model (and its config object) loads; from_pretrained's rules.
    assert ckptcheck.check(weights, model=model, loader="hf").loads
    assert ckptcheck.check(weights, model=str(tmp_path / "bert" / "config.json"), loader="hf").loads
    # A wider model: PyTorch's error, verbatim.
    wider = transformers.BertForSequenceClassification(
        transformers.BertConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    )
    report = ckptcheck.check(weights, model=wider)
    from safetensors.torch import load_file

    with pytest.raises(RuntimeError) as raised:
        wider.load_state_dict(load_file(weights))
    assert report.pytorch_error == str(raised.value)
    assert not report.loads


def test_cn_clip_models_from_small_configs(tmp_path):
    model_module = pytest.importorskip("cn_clip.clip.model")

    def small(vision_width):
        return model_module.CLIP(
            embed_dim=16, image_resolution=32, vision_layers=2, vision_width=vision_width,
            vision_patch_size=16, vocab_size=100, text_attention_probs_dropout_prob=0.0,
            text_hidden_act="gelu", text_hidden_dropout_prob=0.0, text_hidden_size=32,
            text_initializer_range=0.02, text_intermediate_size=37, text_max_position_embeddings=16,
            text_num_attention_heads=4, text_num_hidden_layers=2, text_type_vocab_size=2,
            vision_head_width=16,
        )

    path = tmp_path / "clip.pt"
    torch.save(small(32).state_dict(), path)
    assert ckptcheck.check(path, model=small(32)).loads
    wider = small(64)
    report = ckptcheck.check(path, model=wider)
    assert report.pytorch_error == torch_load_error(wider, path)
    assert report.size_mismatches


def test_convert_writes_what_torch_reads(tmp_path):
    source = FIXTURES / "formats" / "dtypes.pt"
    out = tmp_path / "out.safetensors"
    written = ckptcheck.convert(source, out)
    assert written == json.loads(json.dumps(written))
    from safetensors.torch import load_file

    tensors = load_file(out)
    original = torch.load(source, weights_only=True)
    for name, tensor in tensors.items():
        assert torch.equal(tensor, original[name].contiguous()), name


def test_errors_carry_their_kind():
    cases = [
        (lambda: ckptcheck.inspect("/no/such/file.pt"), "io"),
        (lambda: ckptcheck.inspect(FIXTURES / "formats" / "README.md"), "unsupported_format"),
        (lambda: ckptcheck.check(FIXTURES / "formats" / "dtypes.pt", model="no-such-preset"), "unknown_preset"),
        (lambda: ckptcheck.check(FIXTURES / "formats" / "dtypes.pt", model=42), "bad_argument"),
        (lambda: ckptcheck.inspect("http://127.0.0.1:9/model.pt"), "remote"),
    ]
    for call, kind in cases:
        with pytest.raises(ckptcheck.Error) as raised:
            call()
        assert raised.value.kind == kind, raised.value
        assert str(raised.value)


def test_presets_are_listed():
    names = {p["name"] for p in ckptcheck.presets()}
    assert "ViT-B-16@RoBERTa-wwm-ext-base-chinese" in names


def write_pipeline_case(folder, name):
    """A diffusers pipeline folder from tests/fixtures/pipeline/pipelines.json
    (make_pipelines.py), tensors as sparse zeros: only headers are read."""
    cases = json.loads((FIXTURES / "pipeline" / "pipelines.json").read_text())["cases"]
    case = next(c for c in cases if c["name"] == name)
    size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2}
    for relative, stored in case["files"].items():
        if "same_as" in stored:
            stored = next(c for c in cases if c["name"] == stored["same_as"])["files"][relative]
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if "safetensors" in stored:
            header, offset = ({"__metadata__": stored["metadata"]} if stored["metadata"] else {}), 0
            for tensor, shape, dtype in stored["safetensors"]:
                length = size.get(dtype, 1)
                for dim in shape:
                    length *= dim
                header[tensor] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + length]}
                offset += length
            data = json.dumps(header).encode()
            target.write_bytes(len(data).to_bytes(8, "little") + data)
            os.truncate(target, 8 + len(data) + offset)
        else:
            target.write_text(stored.get("json", stored.get("text")))


def test_check_pipeline_equals_the_cli_report(tmp_path):
    folder = tmp_path / "sd-wider-text-encoder"
    write_pipeline_case(folder, "sd-wider-text-encoder")
    report = ckptcheck.check_pipeline(folder)
    text = report.pop("text")
    assert report == cli_json("check", str(folder))
    # Every component loads; the UNet and the text encoder disagree.
    assert report["loads"] and not report["consistent"]
    assert "unet cross_attention_dim 32 but text_encoder hidden_size 64" in text
    # No component has fp16 files: from_pretrained(variant="fp16") refuses.
    fp16 = ckptcheck.check_pipeline(folder, variant="fp16")
    assert not fp16["loads"]
    assert fp16["error"].startswith("You are trying to load the model files of the `variant=fp16`")
