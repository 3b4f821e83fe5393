#!/usr/bin/env bash
# Download CLEVR-Change, Spot-the-Diff, the released CLIP4IDC weights and OpenAI's ViT-B/32 into $1 (data/clip4idc),
# resumably, and write the ground-truth files. Usage: download_data.sh DATA_DIR PYTHON
# Every download goes through ../tools/fetch.py (resumable; sizes, digests and structure checked; a wrong or partial
# file is set aside as *.bad, never unpacked). VLREPRO_MIRROR sends every download to a mirror (see tools/fetch.py);
# CLIP_SHA256 overrides the published digest for a mirror that serves other bytes (the tests' fake files).
set -euo pipefail
DATA=${1:?usage: download_data.sh DATA_DIR PYTHON}
PY=${2:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
FETCH="$HERE/../tools/fetch.py"
CLIP_URL=https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt
CLIP_SHA256=${CLIP_SHA256:-40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af}
SPOT_ANN=https://raw.githubusercontent.com/harsh19/spot-the-diff/master/data/annotations
SPOT_REFORMAT_FOLDER=1g8QD6Y3La8cIamE7jeSSlXTw8G3r5Q8o
PRETRAINED_FOLDER=1qOYVpZy57clJPF6AThsnO0Tfy4zq-gg1
TRAINED_FOLDER=18UfIvwKt0EE14EbogJycMmANpUJtsZbE

if ! "$PY" "$FETCH" --probe https://openaipublic.azureedge.net && ! "$PY" "$FETCH" --probe https://drive.google.com; then
  echo "clip4idc-data: no internet connection (openaipublic.azureedge.net and drive.google.com unreachable); nothing downloaded" >&2
  exit 1
fi
[ -n "${VLREPRO_MIRROR:-}" ] || "$PY" -c "import gdown" 2>/dev/null \
  || { echo "clip4idc-data: gdown is missing: pip install gdown" >&2; exit 1; }
mkdir -p "$DATA"/{spot-the-diff,gt,ckpts/pretrained,ckpts/trained}

# OpenAI CLIP ViT-B/32 (the file name's hash is its sha256; a TorchScript archive, so a zip)
"$PY" "$FETCH" --out "$DATA/ViT-B-32.pt" --digest "$CLIP_SHA256" --check zip "$CLIP_URL"

# CLEVR-Change (RobustChangeCaptioning tarball; it unpacks to data/)
if [ ! -f "$DATA/clevr_change/data/splits.json" ]; then
  "$PY" "$FETCH" --out "$DATA/clevr_change.tar.gz" \
    --check tar:data/splits.json,data/change_captions.json,data/no_change_captions.json,data/images,data/sc_images,data/nsc_images \
    gdrive:1HJ3gWjaUJykEckyb2M0MB4HnrJSihjVe
  mkdir -p "$DATA/clevr_change"
  tar -xzf "$DATA/clevr_change.tar.gz" -C "$DATA/clevr_change"
fi

# Spot-the-Diff: resized images (Drive) and the raw annotations (GitHub), then the reformatted files
if [ ! -d "$DATA/spot-the-diff/images" ]; then
  "$PY" "$FETCH" --out "$DATA/spot-the-diff/resized_images.zip" --check 'zip:*1_2.png' gdrive:1OVb4_3Uec_xbyUk90aWC6LFpKsIOtR7v
  rm -rf "$DATA/spot-the-diff/unpacked"
  "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$DATA/spot-the-diff/resized_images.zip" "$DATA/spot-the-diff/unpacked"
  mv "$(dirname "$(find "$DATA/spot-the-diff/unpacked" -name '1_2.png' | head -1)")" "$DATA/spot-the-diff/images"
  rm -rf "$DATA/spot-the-diff/unpacked"
fi
for split in train val test; do
  "$PY" "$FETCH" --out "$DATA/spot-the-diff/$split.json" --check json "$SPOT_ANN/$split.json"
done
# The authors' reformatted files (Drive folder); when Drive refuses, the same files are built from the raw ones.
"$PY" "$FETCH" --out "$DATA/spot-the-diff/authors_reformat" --only 'reformat_*.json' --check json \
  "gdrive-folder:$SPOT_REFORMAT_FOLDER" \
  || echo "clip4idc-data: the authors' reformatted Spot-the-Diff files were not fetched; building them from the raw annotations" >&2
if "$PY" "$HERE/preprocess/reformat_dataset.py" --check "$DATA/spot-the-diff/authors_reformat" 2>/dev/null; then
  cp "$DATA"/spot-the-diff/authors_reformat/reformat_{train,val,test}.json "$DATA/spot-the-diff/"
else
  "$PY" "$HERE/preprocess/reformat_dataset.py" --data_path "$DATA/spot-the-diff"
fi

# Ground truth for scoring (CLEVR: RobustChangeCaptioning's merge of change + no-change captions)
"$PY" "$HERE/gt/eval_utils.py" --datatype spot --data_path "$DATA/spot-the-diff" --gt_dir "$DATA/gt"
"$PY" "$HERE/gt/eval_utils.py" --datatype clevr --data_path "$DATA/clevr_change/data" --gt_dir "$DATA/gt"

# Released weights: stage 1 (pretrained/) and stage 2 (trained/) Drive folders, each pytorch_model.bin* checked
# against the manifest of its stage (a wrong or partial one is set aside as *.bad)
BAD=0
"$PY" "$FETCH" --out "$DATA/ckpts/pretrained" --only 'pytorch_model.bin*' \
  --check "torch:$HERE/tests/fixtures/clip4idc.retrieval.state_dict.tsv" "gdrive-folder:$PRETRAINED_FOLDER" || BAD=1
"$PY" "$FETCH" --out "$DATA/ckpts/trained" --only 'pytorch_model.bin*' \
  --check "torch:$HERE/tests/fixtures/clip4idc.caption.state_dict.tsv" "gdrive-folder:$TRAINED_FOLDER" || BAD=1
if [ "$BAD" = 1 ]; then
  echo "clip4idc-data: a released checkpoint was not fetched or failed its check (set aside as *.bad); if Drive keeps refusing (quota), download the folders https://drive.google.com/drive/folders/$PRETRAINED_FOLDER and https://drive.google.com/drive/folders/$TRAINED_FOLDER in a browser into $DATA/ckpts/{pretrained,trained}/" >&2
  exit 1
fi
echo "clip4idc-data: done ($DATA)"
