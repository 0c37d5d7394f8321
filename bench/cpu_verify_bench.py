"""CPU forward benchmark: `ckptcheck verify --device cpu` (the fast CPU
backend, src/fast_cpu/) against PyTorch's CPU forward of the same model with
the same weights, input and thread count, in one run.

Models (random init from their configs, seeded; cached in bench/out/):
  - Chinese-CLIP ViT-B-16@RoBERTa-wwm-ext-base-chinese, `encode_image` of a
    224x224 image (cn_clip's CLIP, saved as a training checkpoint);
  - BERT-base (transformers BertModel, default config), last hidden state of
    128 tokens;
  - a small LLaMA decoder (hidden 1024, 8 layers, 16 heads, 4 kv heads,
    vocab 32000), logits of 128 tokens.

For each model and for 1 and 2 threads (`torch.set_num_threads` and
`--threads`) it prints PyTorch's forward time (median of 5 after a warm-up,
`torch.inference_mode`), ckptcheck's (`run.compute_ms` of `--json`: the
forward only, reading the file excluded; median of 3 processes), the ratio,
and the largest difference between the two outputs relative to the output's
scale. Goal (issue 13): ratio >= 1 (ckptcheck at least as fast).

Then bench/wasm_cpu_bench.mjs: the same ViT forward in the page's wasm
(headless Chromium, one thread) against the native CLI on one thread (goal:
within 3x), when www/pkg and tests/e2e/node_modules are there.

Run: `cargo xtask bench cpu` (builds the page's wasm first) or
`python bench/cpu_verify_bench.py` with a Python that has torch,
transformers, cn_clip, safetensors and numpy. Not a test: nothing asserts a
time.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "cpu_verify"
TOKENS = 128
REPEATS_TORCH = 5
REPEATS_CKPTCHECK = 3


def cn_clip_model():
    import cn_clip.clip as package
    from cn_clip.clip.model import CLIP

    configs = Path(package.__file__).parent / "model_configs"
    config = json.loads((configs / "ViT-B-16.json").read_text())
    config.update(json.loads((configs / "RoBERTa-wwm-ext-base-chinese.json").read_text()))
    torch.manual_seed(0)
    model = CLIP(**config).eval()
    path = OUT / "cn_clip_vit-b-16.pt"
    if not path.exists():
        state = {"module." + k: v for k, v in model.state_dict().items()}
        torch.save({"epoch": 1, "step": 1, "state_dict": state}, path)
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return {
        "name": "Chinese-CLIP ViT-B-16 encode_image, 224x224",
        "files": [str(path)],
        "config": ["ViT-B-16@RoBERTa-wwm-ext-base-chinese"],
        "input": image,
        "forward": lambda: model.encode_image(image),
    }


def hf_model(name, model, ids, forward):
    folder = OUT / name
    if not (folder / "model.safetensors").exists():
        model.save_pretrained(folder, safe_serialization=True)
    return {"files": [str(folder / "model.safetensors")], "config": [str(folder / "config.json")],
            "input": ids, "forward": forward}


def bert_model():
    import transformers as tf

    torch.manual_seed(0)
    model = tf.BertModel(tf.BertConfig(), add_pooling_layer=False).eval()
    ids = torch.randint(1000, 20000, (1, TOKENS), generator=torch.Generator().manual_seed(2))
    case = hf_model("bert_base", model, ids, lambda: model(input_ids=ids).last_hidden_state)
    case["name"] = f"BERT-base last hidden state, {TOKENS} tokens"
    return case


def llama_model():
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                            num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=4,
                            max_position_embeddings=512, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(config).eval()
    ids = torch.randint(1, 32000, (1, TOKENS), generator=torch.Generator().manual_seed(3))
    case = hf_model("llama_small", model, ids, lambda: model(input_ids=ids).logits)
    case["name"] = f"LLaMA (1024 wide, 8 layers, GQA 16/4) logits, {TOKENS} tokens"
    return case


def time_torch(forward, threads):
    torch.set_num_threads(threads)
    with torch.inference_mode():
        output = forward()
        times = []
        for _ in range(REPEATS_TORCH):
            start = time.perf_counter()
            forward()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), output.float().numpy()


def time_ckptcheck(binary, case, threads, workdir):
    input_path = Path(workdir) / "input.npy"
    output_path = Path(workdir) / "output.npy"
    np.save(input_path, case["input"].numpy())
    command = [str(binary), "verify", *case["files"], "--device", "cpu", "--threads", str(threads),
               "--input", str(input_path), "--output", str(output_path), "--json"]
    for config in case["config"]:
        command += ["--config", config]
    times = []
    for _ in range(REPEATS_CKPTCHECK):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode not in (0, 1) or not result.stdout:
            sys.exit(f"ckptcheck verify failed: {result.stderr}")
        verdict = json.loads(result.stdout)
        if not verdict["passed"]:
            sys.exit(f"ckptcheck verify did not pass: {verdict['problems']}")
        times.append(verdict["run"]["compute_ms"])
    return statistics.median(times), np.load(output_path), verdict["run"]["device"]


def relative_difference(ours, theirs):
    ours = ours.reshape(-1)
    theirs = theirs.reshape(-1)
    if ours.size != theirs.size:
        theirs = theirs[-ours.size:]  # the last token's logits
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "ckptcheck"], cwd=ROOT, check=True)
    binary = ROOT / "target" / "release" / "ckptcheck"
    print(f"torch {torch.__version__}; {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for make in (cn_clip_model, bert_model, llama_model):
            case = make()
            for threads in (1, 2):
                torch_ms, torch_out = time_torch(case["forward"], threads)
                ours_ms, ours_out, device = time_ckptcheck(binary, case, threads, workdir)
                difference = relative_difference(ours_out, torch_out)
                rows.append((case["name"], threads, torch_ms, ours_ms, difference))
                print(f"{case['name']}, {threads} thread(s): torch {torch_ms:.1f} ms, "
                      f"ckptcheck {ours_ms:.1f} ms ({device}), torch/ckptcheck "
                      f"{torch_ms / ours_ms:.2f}x (goal >= 1), max difference {difference:.1e} of scale")
    print("\n| model | threads | PyTorch | ckptcheck | PyTorch / ckptcheck | max difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, threads, torch_ms, ours_ms, difference in rows:
        print(f"| {name} | {threads} | {torch_ms:.1f} ms | {ours_ms:.1f} ms | "
              f"{torch_ms / ours_ms:.2f}x | {difference:.1e} |")
    if (ROOT / "www/pkg/ckptcheck_bg.wasm").exists() and (ROOT / "tests/e2e/node_modules").exists():
        subprocess.run(["node", "bench/wasm_cpu_bench.mjs"], cwd=ROOT, check=True)
    else:
        print("wasm: skipped (run `cargo xtask build-web` and `npm ci --prefix tests/e2e` first)")


if __name__ == "__main__":
    main()
