#!/usr/bin/env bash
# One GPU session in one command: environment, the gpu test tier, bench/gpu.py; all output into a folder.
#
#   bash bench/gpu_session.sh [OUT_DIR]              # OUT_DIR defaults to $OUT, else ./gpu-session
#   bash bench/gpu_session.sh --fetch-wheels DIR [HAVE_FILE]
#
# Session (on the GPU machine, from the repository root; ~8 minutes at most, each stage has a timeout):
#   0. machine.txt: nvidia-smi, python, torch and CUDA as seen, ffmpeg or not.
#   1. Python: ./.venv if it imports torch with CUDA; else python3 (which must hold torch with CUDA) in a
#      venv with its system packages (/tmp/pytti-gpu-venv) plus this project's other dependencies:
#      offline from $PYTTI_WHEELS (default ./.gpu-wheels) when that folder exists, else from the index.
#      The project runs from the source tree (PYTHONPATH), so it is not installed.
#   2. pytest -m gpu (tests/gpu) -> pytest-gpu.txt
#   3. bench/gpu.py -> bench-gpu.txt (ViT-B-32 random weights, 512², 40 cutouts, bf16; 6 frames of 50 steps)
#   Without an ffmpeg (the flow assembles an MP4) the flow parts are left out and the files say so:
#   the kill/resume test and bench/gpu.py's per-frame part.
#   summary.txt: every stage's exit status and the lines that carry the figures.
# A dry run on a CPU (checks the script; no figures): PYTTI_SESSION_PYTHON=.venv/bin/python
# PYTTI_SESSION_CPU=1 bash bench/gpu_session.sh /tmp/dry (the gpu tier skips, bench/gpu.py runs --small).
#
# --fetch-wheels DIR [HAVE_FILE] (on a machine with an index, for a GPU machine without one): download
# into DIR the wheels of this project's dependencies except torch/torchvision, for CPython 3.12 on
# x86-64 Linux (override with PYTTI_WHEEL_PYTHON, e.g. 3.11); names listed in HAVE_FILE (one a line:
# packages the GPU machine already has) are removed from DIR afterwards, to keep what travels small.
set -u

if [ "${1:-}" = "--fetch-wheels" ]; then
    dir=${2:?usage: gpu_session.sh --fetch-wheels DIR [HAVE_FILE]}
    have=${3:-}
    py=${PYTTI_WHEEL_PYTHON:-3.12}
    mkdir -p "$dir"
    plat=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
    common=(-d "$dir" --python-version "$py" "${plat[@]}" --only-binary=:all:)
    # prefect, pydantic, yaml, ffmpeg wrappers with their dependencies; the torch libraries without theirs
    pip download "${common[@]}" "prefect>=3.9,<4" "pydantic>=2.7,<3" "pyyaml>=6" "ffmpeg-python>=0.2" \
        "imageio-ffmpeg>=0.5" "safetensors>=0.4" "pillow>=10" "numpy>=1.26" || exit 1
    pip download "${common[@]}" --no-deps "open_clip_torch>=3.0,<4" "kornia>=0.7,<1" kornia-rs ftfy \
        wcwidth regex timm huggingface-hub tqdm || exit 1
    if [ -n "$have" ]; then
        while read -r name; do
            [ -n "$name" ] || continue
            pattern=$(echo "$name" | tr 'A-Z-.' 'a-z__')
            find "$dir" -maxdepth 1 -iname "${pattern}-*.whl" -delete
        done <"$have"
    fi
    du -sh "$dir"
    exit 0
fi

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
out=${1:-${OUT:-$root/gpu-session}}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
note() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$summary"; }

export PYTHONPATH="$root" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d)}"
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"

# 0. the machine
{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    command -v ffmpeg || echo "no ffmpeg on PATH"
} >"$out/machine.txt" 2>&1

# 1. python
cuda_ok() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
py=""
if [ -n "${PYTTI_SESSION_PYTHON:-}" ]; then
    py=$PYTTI_SESSION_PYTHON
    note "python: $py (PYTTI_SESSION_PYTHON)"
elif [ -x .venv/bin/python ] && cuda_ok .venv/bin/python; then
    py=.venv/bin/python
    note "python: existing .venv"
elif command -v python3 >/dev/null && cuda_ok python3; then
    venv=/tmp/pytti-gpu-venv
    [ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
    wheels=${PYTTI_WHEELS:-$root/.gpu-wheels}
    deps=$("$venv/bin/python" - <<'EOF'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(d for d in deps if not d.startswith(("torch", "torchvision"))))
EOF
)
    if [ -d "$wheels" ]; then
        source_args=(--no-index --find-links "$wheels")
        note "python: python3 + system packages, dependencies offline from $wheels"
    else
        source_args=()
        note "python: python3 + system packages, dependencies from the package index"
    fi
    # shellcheck disable=SC2086
    timeout 150 "$venv/bin/python" -m pip install -q "${source_args[@]}" $deps pytest pytest-timeout \
        >"$out/install.txt" 2>&1
    note "install: exit $?"
    py=$venv/bin/python
else
    note "no Python with a CUDA torch here (see machine.txt): nothing to run"
    exit 1
fi
"$py" -c "import torch, open_clip, prefect; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'GPU', torch.cuda.is_available(), '| open_clip', open_clip.__version__, '| prefect', prefect.__version__)" \
    >>"$out/machine.txt" 2>&1
tail -1 "$out/machine.txt" | tee -a "$summary"

have_ffmpeg=0
"$py" -c "from pytti_engine.video import ffmpeg_exe; ffmpeg_exe()" >/dev/null 2>&1 && have_ffmpeg=1
[ $have_ffmpeg = 1 ] || note "no ffmpeg for the flow: the kill/resume test and the per-frame benchmark are left out"

# 2. the gpu tier
select=()
[ $have_ffmpeg = 1 ] || select=(-k "not kill")
timeout 180 "$py" -m pytest -m gpu tests/gpu -v -s -p no:cacheprovider "${select[@]}" >"$out/pytest-gpu.txt" 2>&1
note "pytest -m gpu: exit $?"
grep -E "PASSED|FAILED|ERROR|SKIPPED|difference|host syncs|passed|failed" "$out/pytest-gpu.txt" | tail -20 >>"$summary"

# 3. the benchmark
bench=()
[ $have_ffmpeg = 1 ] || bench=(--skip-flow)
[ "${PYTTI_SESSION_CPU:-0}" = 1 ] && bench+=(--device cpu --small --rounds 2 --repeats 1)
timeout 180 "$py" bench/gpu.py "${bench[@]}" >"$out/bench-gpu.txt" 2>&1
note "bench/gpu.py: exit $?"
grep -E "^(NVIDIA|bare|engine|bf16|channels|step ratio|prefect|repeat|frames|flow per frame|ratio)" \
    "$out/bench-gpu.txt" >>"$summary"
note "done"
