#!/usr/bin/env bash
# Seed each fuzz target's corpus from tests/fixtures and run the targets one
# after another, niced, each for SECONDS (default 600). Logs go to
# fuzz/logs/<target>.log; crashes to fuzz/artifacts/<target>/. The figures in
# fuzz/RESULTS.md are the last status lines of these logs.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them (set CARGO_FUZZ="cargo +nightly fuzz" to use a nightly instead).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(safetensors sharded_index zip pickle legacy tar gguf config_json scan)
fi
FIX=tests/fixtures
CARGO_FUZZ=${CARGO_FUZZ:-cargo fuzz}
export RUSTC_BOOTSTRAP=1

seed() {
  local target=$1 dir=fuzz/corpus/$1
  mkdir -p "$dir"
  case $target in
    safetensors|scan)
      cp $FIX/formats/small.safetensors $FIX/formats/sharded/*.safetensors "$dir/"
      [ -d $FIX/hostile ] && cp $FIX/hostile/*.safetensors "$dir/" 2>/dev/null || true
      if [ "$target" = scan ]; then
        cp $FIX/formats/*.pt $FIX/formats/small.gguf "$dir/"
        [ -d $FIX/hostile ] && cp $FIX/hostile/*.pt $FIX/hostile/*.gguf "$dir/" 2>/dev/null || true
      fi ;;
    sharded_index)
      cp $FIX/formats/sharded/model.safetensors.index.json "$dir/"
      cp $FIX/formats/sharded_bin/pytorch_model.bin.index.json "$dir/" ;;
    zip)
      for f in dtypes nested bigendian evil_os_system evil_eval evil_subprocess; do
        cp $FIX/formats/$f.pt "$dir/"
      done
      cp $FIX/formats/sharded_bin/*.bin "$dir/"
      [ -d $FIX/hostile ] && cp $FIX/hostile/zip_*.pt $FIX/hostile/pickle_*.pt "$dir/" 2>/dev/null || true ;;
    pickle)
      # The data.pkl of every zip fixture, and the legacy files (whose first
      # pickle is the magic number).
      python3 - "$dir" $FIX/formats/*.pt $FIX/cn_clip/*.pt <<'PY'
import sys, zipfile, pathlib
out = pathlib.Path(sys.argv[1])
for path in sys.argv[2:]:
    p = pathlib.Path(path)
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                if name.endswith("data.pkl"):
                    (out / (p.stem + ".pkl")).write_bytes(z.read(name))
    else:
        (out / (p.stem + ".legacy")).write_bytes(p.read_bytes()[:4096])
PY
      [ -d $FIX/hostile ] && cp $FIX/hostile/*.pkl "$dir/" 2>/dev/null || true ;;
    legacy)
      cp $FIX/formats/legacy*.pt "$dir/"
      [ -d $FIX/hostile ] && cp $FIX/hostile/legacy_*.pt "$dir/" 2>/dev/null || true ;;
    tar)
      cp $FIX/formats/tar.pt "$dir/"
      [ -d $FIX/hostile ] && cp $FIX/hostile/tar_*.pt "$dir/" 2>/dev/null || true ;;
    gguf)
      cp $FIX/formats/small.gguf "$dir/"
      [ -d $FIX/hostile ] && cp $FIX/hostile/*.gguf "$dir/" 2>/dev/null || true ;;
    config_json)
      cp $FIX/formats/sharded/config.json "$dir/hf_config.json"
      # Every built-in config string, and the Chinese-CLIP vision + text pair
      # joined by NUL as the target splits them.
      python3 - "$dir" src/arch/cn_clip.rs src/arch/open_clip/presets.rs <<'PY'
import re, sys, pathlib
out = pathlib.Path(sys.argv[1])
configs = []
for path in sys.argv[2:]:
    configs += re.findall(r'r#"(\{.*?\})"#', pathlib.Path(path).read_text())
for i, text in enumerate(configs):
    (out / f"config{i}.json").write_text(text)
vision = [c for c in configs if '"vision_layers"' in c]
text = [c for c in configs if '"text_hidden_size"' in c]
if vision and text:
    (out / "cn_clip_pair.json").write_bytes(vision[0].encode() + b"\0" + text[0].encode())
PY
      [ -d $FIX/hostile ] && cp $FIX/hostile/config_*.json "$dir/" 2>/dev/null || true ;;
  esac
}

mkdir -p fuzz/logs
for target in "${TARGETS[@]}"; do
  seed "$target"
  (cd fuzz && nice -n 19 $CARGO_FUZZ build "$target" >"logs/$target.build.log" 2>&1)
  echo "== $target: ${SECONDS_PER_TARGET}s"
  # Fork mode keeps going after a finding (each one is saved under
  # fuzz/artifacts/<target>/), so every target gets its full time.
  (cd fuzz && nice -n 19 $CARGO_FUZZ run "$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -fork=1 -ignore_crashes=1 \
      -ignore_timeouts=1 -ignore_ooms=1 -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
      >"logs/$target.log" 2>&1) || true
  tail -n 3 "fuzz/logs/$target.log"
done

# The figures for fuzz/RESULTS.md: the last status line of each log.
echo "| target | execs | cov | ft | corpus | oom/timeout/crash | seconds |"
echo "|---|---:|---:|---:|---:|---|---:|"
for target in "${TARGETS[@]}"; do
  grep -E '^#[0-9]+: cov:' "fuzz/logs/$target.log" | tail -n 1 | awk -v t="$target" \
    '{ gsub("#", "", $1); gsub(":", "", $1); gsub("s", "", $13);
       printf "| %s | %s | %s | %s | %s | %s | %s |\n", t, $1, $3, $5, $7, $11, $13 }'
done
