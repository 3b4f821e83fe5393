#!/usr/bin/env bash
# Download DMN's datasets, the DPN92 ImageNet weights and the released DMN weights into one folder (--path).
#
# Layout (what `python -m dmn_pytorch.train --data PATH` reads):
#   PATH/referit/{images,mask}/            ReferIt images and .mat masks      (referitdata.tar.gz)
#   PATH/referit/splits/                   query json files + vocabularies    (referit_splits.tar.bz2)
#   PATH/other/images/mscoco/images/train2014/   COCO train2014 images
#   PATH/other/{refcoco,refcoco+,refcocog}/      refs(*).p + instances.json
#   PATH/weights/                          dpn92_extra-b040e4a9b.pth and the released dmn_*_weights.pth
# Every download resumes (aria2c -c, else curl -C -, else wget -c); finished steps are skipped on re-runs.
# Dead original links are followed by their live mirrors (web.archive.org snapshots, GitHub releases).
set -euo pipefail

DATA_PATH="referit_data"
usage() { echo "usage: $0 [-p|--path DIR] [--skip-coco] [--skip-referit] [--skip-weights]"; }
SKIP_COCO=0; SKIP_REFERIT=0; SKIP_WEIGHTS=0
while [ $# -gt 0 ]; do
  case "$1" in
    -p|--path) DATA_PATH="$2"; shift 2 ;;
    --path=*) DATA_PATH="${1#*=}"; shift ;;
    --skip-coco) SKIP_COCO=1; shift ;;
    --skip-referit) SKIP_REFERIT=1; shift ;;
    --skip-weights) SKIP_WEIGHTS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "download_data.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

ARCHIVE="https://web.archive.org/web/2022id_"
REFERIT_DATA_URLS=(
  "http://www.eecs.berkeley.edu/~ronghang/projects/cvpr16_text_obj_retrieval/referitdata.tar.gz"
  "https://people.eecs.berkeley.edu/~ronghang/projects/cvpr16_text_obj_retrieval/referitdata.tar.gz"
  "$ARCHIVE/http://www.eecs.berkeley.edu/~ronghang/projects/cvpr16_text_obj_retrieval/referitdata.tar.gz"
)
REFERIT_SPLITS_URLS=(
  "https://s3-sa-east-1.amazonaws.com/query-objseg/referit_splits.tar.bz2"
  "$ARCHIVE/https://s3-sa-east-1.amazonaws.com/query-objseg/referit_splits.tar.bz2"
)
COCO_URLS=("http://images.cocodataset.org/zips/train2014.zip")
REFER_BASE="http://bvisionweb1.cs.unc.edu/licheng/referit/data"
DPN92_URLS=(
  "http://data.lip6.fr/cadene/pretrainedmodels/dpn92_extra-b040e4a9b.pth"
  "https://github.com/rwightman/pytorch-dpn-pretrained/releases/download/v0.1/dpn92_extra-b040e4a9b.pth"
)
DMN_WEIGHTS_BASE="http://marr.uniandes.edu.co/weights/dmn/highres"

if ! curl -s --head --max-time 10 http://images.cocodataset.org/ >/dev/null 2>&1; then
  echo "dmn-data: no internet connection (cannot reach images.cocodataset.org); connect and re-run 'make dmn-data'" >&2
  exit 1
fi

# fetch OUT URL... : resumable download trying each URL in turn.
fetch() {
  local out="$1"; shift
  [ -f "$out.done" ] && return 0
  for url in "$@"; do
    echo "downloading $url"
    if command -v aria2c >/dev/null; then
      aria2c -c -x 8 -d "$(dirname "$out")" -o "$(basename "$out")" "$url" && { touch "$out.done"; return 0; }
    elif curl -fL -C - --retry 3 -o "$out" "$url"; then
      touch "$out.done"; return 0
    elif command -v wget >/dev/null && wget -c -O "$out" "$url"; then
      touch "$out.done"; return 0
    fi
    echo "  failed: $url"
  done
  return 1
}

mkdir -p "$DATA_PATH"/{referit/splits,other/images/mscoco/images,weights,downloads}
DL="$DATA_PATH/downloads"

if [ "$SKIP_REFERIT" = 0 ]; then
  if [ ! -d "$DATA_PATH/referit/images" ]; then
    fetch "$DL/referitdata.tar.gz" "${REFERIT_DATA_URLS[@]}" && tar -xzf "$DL/referitdata.tar.gz" -C "$DATA_PATH/referit" \
      || echo "WARNING: ReferIt images/masks unavailable (see ronghanghu/text_objseg issue 7 for copies)" >&2
  fi
  if [ ! -f "$DATA_PATH/referit/splits/vocabulary_Gref.txt" ]; then
    fetch "$DL/referit_splits.tar.bz2" "${REFERIT_SPLITS_URLS[@]}" && tar -xjf "$DL/referit_splits.tar.bz2" -C "$DATA_PATH/referit/splits" \
      || echo "WARNING: the DMN splits tarball (vocabularies, ReferIt queries) is unavailable (DMS issue 36)" >&2
  fi
fi

if [ "$SKIP_COCO" = 0 ]; then
  if [ ! -d "$DATA_PATH/other/images/mscoco/images/train2014" ]; then
    fetch "$DL/train2014.zip" "${COCO_URLS[@]}"
    # Known checksum of the COCO 2014 train zip; a mismatch is reported, not fatal.
    if command -v md5sum >/dev/null && [ "$(md5sum < "$DL/train2014.zip" | cut -d' ' -f1)" != "0da8c0bd3d6becc4dcb32757491aca88" ]; then
      echo "WARNING: train2014.zip md5 differs from 0da8c0bd3d6becc4dcb32757491aca88" >&2
    fi
    unzip -q -o "$DL/train2014.zip" -d "$DATA_PATH/other/images/mscoco/images"
  fi
  for name in refcoco refcoco+ refcocog; do
    if [ ! -d "$DATA_PATH/other/$name" ]; then
      enc="${name//+/%2B}"
      fetch "$DL/$name.zip" "$REFER_BASE/$name.zip" \
        "https://web.archive.org/web/20220413011718id_/$REFER_BASE/$enc.zip" "$ARCHIVE/$REFER_BASE/$enc.zip"
      unzip -q -o "$DL/$name.zip" -d "$DATA_PATH/other"
    fi
  done
fi

if [ "$SKIP_WEIGHTS" = 0 ]; then
  fetch "$DATA_PATH/weights/dpn92_extra-b040e4a9b.pth" "${DPN92_URLS[@]}" \
    || echo "WARNING: DPN92 ImageNet weights unavailable; training starts the visual module from random weights" >&2
  for name in referit unc unc%2B gref; do
    out="$DATA_PATH/weights/dmn_${name//%2B/+}_weights.pth"
    fetch "$out" "$DMN_WEIGHTS_BASE/dmn_${name}_weights.pth" "$ARCHIVE/$DMN_WEIGHTS_BASE/dmn_${name}_weights.pth" \
      || echo "WARNING: released weights dmn_${name}_weights.pth unavailable (server gone, DMS issue 37)" >&2
  done
fi
echo "DMN data in $DATA_PATH"
