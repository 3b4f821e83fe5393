#!/usr/bin/env bash
# Download DMN's datasets, the DPN92 ImageNet weights and the released DMN weights into one folder (--path).
#
# Layout (what `python -m dmn_pytorch.train --data PATH` reads):
#   PATH/referit/{images,mask}/            ReferIt images and .mat masks      (referitdata.tar.gz)
#   PATH/referit/splits/                   query json files + vocabularies    (referit_splits.tar.bz2)
#   PATH/other/images/mscoco/images/train2014/   COCO train2014 images
#   PATH/other/{refcoco,refcoco+,refcocog}/      refs(*).p + instances.json
#   PATH/weights/                          dpn92_extra-b040e4a9b.pth and the released dmn_*_weights.pth
# Every download resumes and is verified (../tools/fetch.py); finished steps are skipped on re-runs.
# Dead original links are followed by their live mirrors (web.archive.org snapshots, GitHub releases).
# VLREPRO_MIRROR sends every download to a mirror (see tools/fetch.py); COCO_TRAIN2014_MD5 overrides the published
# digest for a mirror that serves other bytes (the tests' fake files).
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

HERE=$(cd "$(dirname "$0")" && pwd)
if ! "${PY:-python3}" "$HERE/../tools/fetch.py" --probe http://images.cocodataset.org/; then
  echo "dmn-data: no internet connection (cannot reach images.cocodataset.org); connect and re-run 'make dmn-data'" >&2
  exit 1
fi

# fetch OUT CHECK URL... : resumable, verified download (../tools/fetch.py) trying each URL in turn; a wrong or
# partial file is set aside as OUT.bad and never unpacked.
fetch() {
  local out="$1" check="$2"; shift 2
  "${PY:-python3}" "$HERE/../tools/fetch.py" --out "$out" ${check:+--check "$check"} "$@"
}

mkdir -p "$DATA_PATH"/{referit/splits,other/images/mscoco/images,weights,downloads}
DL="$DATA_PATH/downloads"

if [ "$SKIP_REFERIT" = 0 ]; then
  if [ ! -d "$DATA_PATH/referit/images" ]; then
    fetch "$DL/referitdata.tar.gz" tar:images,mask "${REFERIT_DATA_URLS[@]}" && tar -xzf "$DL/referitdata.tar.gz" -C "$DATA_PATH/referit" \
      || echo "WARNING: ReferIt images/masks unavailable (see ronghanghu/text_objseg issue 7 for copies)" >&2
  fi
  if [ ! -f "$DATA_PATH/referit/splits/vocabulary_Gref.txt" ]; then
    fetch "$DL/referit_splits.tar.bz2" tar:vocabulary_Gref.txt "${REFERIT_SPLITS_URLS[@]}" && tar -xjf "$DL/referit_splits.tar.bz2" -C "$DATA_PATH/referit/splits" \
      || echo "WARNING: the DMN splits tarball (vocabularies, ReferIt queries) is unavailable (DMS issue 36)" >&2
  fi
fi

if [ "$SKIP_COCO" = 0 ]; then
  if [ ! -d "$DATA_PATH/other/images/mscoco/images/train2014" ]; then
    # the COCO 2014 train zip's published MD5
    "${PY:-python3}" "$HERE/../tools/fetch.py" --out "$DL/train2014.zip" \
      --digest "${COCO_TRAIN2014_MD5:-0da8c0bd3d6becc4dcb32757491aca88}" \
      --check zip:train2014 "${COCO_URLS[@]}"
    unzip -q -o "$DL/train2014.zip" -d "$DATA_PATH/other/images/mscoco/images"
  fi
  for name in refcoco refcoco+ refcocog; do
    if [ ! -d "$DATA_PATH/other/$name" ]; then
      enc="${name//+/%2B}"
      fetch "$DL/$name.zip" "zip:$name/instances.json" "$REFER_BASE/$name.zip" \
        "https://web.archive.org/web/20220413011718id_/$REFER_BASE/$enc.zip" "$ARCHIVE/$REFER_BASE/$enc.zip"
      unzip -q -o "$DL/$name.zip" -d "$DATA_PATH/other"
    fi
  done
fi

if [ "$SKIP_WEIGHTS" = 0 ]; then
  fetch "$DATA_PATH/weights/dpn92_extra-b040e4a9b.pth" torch "${DPN92_URLS[@]}" \
    || echo "WARNING: DPN92 ImageNet weights unavailable; training starts the visual module from random weights" >&2
  for name in referit unc unc%2B gref; do
    out="$DATA_PATH/weights/dmn_${name//%2B/+}_weights.pth"
    # keys only: the word embedding's shape follows each data set's vocabulary
    fetch "$out" "torchkeys:$HERE/tests/fixtures/dmn.highres.state_dict.tsv" "$DMN_WEIGHTS_BASE/dmn_${name}_weights.pth" \
      "$ARCHIVE/$DMN_WEIGHTS_BASE/dmn_${name}_weights.pth" \
      || echo "WARNING: released weights dmn_${name}_weights.pth unavailable (server gone, DMS issue 37)" >&2
  done
fi
echo "DMN data in $DATA_PATH"
