#!/usr/bin/env bash
# `make gpu-check` on the lent H100, whose image has Python 3.12 and torch 2.11 but not the packages below.
#   here, once:      bash tools/gpu_check_device.sh fetch-wheels    (about 1.3 MB into .whl/, ignored by git)
#   on the device:   one run call: command "bash tools/gpu_check_device.sh run", carry [".whl"], timeout_s 560
# The run writes gpu_check.json, gpu_check.log and the five subproject logs to $OUT (7 files, within the 8 allowed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Imported by the gpu-check paths and absent from the device image: sru (dmn's SRU), pycocotools (dmn's data
# package), ftfy and its wcwidth (clip4idc's tokenizer). The versions of requirements.txt.
WHEELS=(sru==2.6.0 pycocotools==2.0.11 ftfy==6.3.1 wcwidth==0.9.5)

case "${1:-}" in
  fetch-wheels)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
    ls -l .whl
    ;;
  run)
    : "${OUT:?run this on the device machine, where \$OUT is set}"
    [ -d .whl ] || { echo "no .whl/: run 'bash tools/gpu_check_device.sh fetch-wheels' here and carry .whl"; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    status=0
    python3 tools/gpu_check.py --device cuda --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log" || status=$?
    cp "$OUT"/gpu_check_parts/*.log "$OUT"/ 2>/dev/null || true
    rm -rf "$OUT/gpu_check_parts"
    exit "$status"
    ;;
  *)
    echo "usage: bash tools/gpu_check_device.sh fetch-wheels|run"
    exit 2
    ;;
esac
