#!/usr/bin/env bash
# Download CLEVR-Change, Spot-the-Diff, the released CLIP4IDC weights and OpenAI's ViT-B/32 into $1 (data/clip4idc),
# resumably, and write the ground-truth files. Usage: download_data.sh DATA_DIR PYTHON
set -euo pipefail
DATA=${1:?usage: download_data.sh DATA_DIR PYTHON}
PY=${2:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
CLIP_URL=https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt
CLIP_SHA256=40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af
SPOT_ANN=https://raw.githubusercontent.com/harsh19/spot-the-diff/master/data/annotations
SPOT_REFORMAT_FOLDER=1g8QD6Y3La8cIamE7jeSSlXTw8G3r5Q8o

if ! curl -sfI --max-time 10 https://openaipublic.azureedge.net >/dev/null 2>&1 && \
   ! curl -sfI --max-time 10 https://drive.google.com >/dev/null 2>&1; then
  echo "clip4idc-data: no internet connection (openaipublic.azureedge.net and drive.google.com unreachable); nothing downloaded" >&2
  exit 1
fi
"$PY" -c "import gdown" 2>/dev/null || { echo "clip4idc-data: gdown is missing: pip install gdown" >&2; exit 1; }
mkdir -p "$DATA"/{spot-the-diff,gt,ckpts/pretrained,ckpts/trained}

# OpenAI CLIP ViT-B/32 (the file name's hash is its sha256)
curl -fL -C - -o "$DATA/ViT-B-32.pt" "$CLIP_URL"
echo "$CLIP_SHA256  $DATA/ViT-B-32.pt" | sha256sum -c -

# CLEVR-Change (RobustChangeCaptioning tarball; it unpacks to data/)
if [ ! -f "$DATA/clevr_change/data/splits.json" ]; then
  "$PY" -m gdown --continue 1HJ3gWjaUJykEckyb2M0MB4HnrJSihjVe -O "$DATA/clevr_change.tar.gz"
  mkdir -p "$DATA/clevr_change"
  tar -xzf "$DATA/clevr_change.tar.gz" -C "$DATA/clevr_change"
fi

# Spot-the-Diff: resized images (Drive) and the raw annotations (GitHub), then the reformatted files
if [ ! -d "$DATA/spot-the-diff/images" ]; then
  "$PY" -m gdown --continue 1OVb4_3Uec_xbyUk90aWC6LFpKsIOtR7v -O "$DATA/spot-the-diff/resized_images.zip"
  "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$DATA/spot-the-diff/resized_images.zip" "$DATA/spot-the-diff/unpacked"
  mv "$(dirname "$(find "$DATA/spot-the-diff/unpacked" -name '1_2.png' | head -1)")" "$DATA/spot-the-diff/images"
  rm -rf "$DATA/spot-the-diff/unpacked"
fi
for split in train val test; do
  curl -fL -C - -o "$DATA/spot-the-diff/$split.json" "$SPOT_ANN/$split.json"
done
# The authors' reformatted files (Drive folder); when Drive refuses, the same files are built from the raw ones.
"$PY" -m gdown --folder --continue "$SPOT_REFORMAT_FOLDER" -O "$DATA/spot-the-diff/authors_reformat" \
  || echo "clip4idc-data: the authors' reformatted Spot-the-Diff files were not fetched; building them from the raw annotations" >&2
if "$PY" "$HERE/preprocess/reformat_dataset.py" --check "$DATA/spot-the-diff/authors_reformat" 2>/dev/null; then
  cp "$DATA"/spot-the-diff/authors_reformat/reformat_{train,val,test}.json "$DATA/spot-the-diff/"
else
  "$PY" "$HERE/preprocess/reformat_dataset.py" --data_path "$DATA/spot-the-diff"
fi

# Ground truth for scoring (CLEVR: RobustChangeCaptioning's merge of change + no-change captions)
"$PY" "$HERE/gt/eval_utils.py" --datatype spot --data_path "$DATA/spot-the-diff" --gt_dir "$DATA/gt"
"$PY" "$HERE/gt/eval_utils.py" --datatype clevr --data_path "$DATA/clevr_change/data" --gt_dir "$DATA/gt"

# Released weights: stage 1 (pretrained/) and stage 2 (trained/) Drive folders, each file checked against the
# manifest of its stage (a wrong or partial one is set aside as *.bad)
"$PY" -m gdown --folder --continue 1qOYVpZy57clJPF6AThsnO0Tfy4zq-gg1 -O "$DATA/ckpts/pretrained"
"$PY" -m gdown --folder --continue 18UfIvwKt0EE14EbogJycMmANpUJtsZbE -O "$DATA/ckpts/trained"
BAD=0
for stage in pretrained:retrieval trained:caption; do
  for ckpt in "$DATA/ckpts/${stage%%:*}"/pytorch_model.bin*; do
    [ -e "$ckpt" ] || continue
    "$PY" "$HERE/../tools/fetch.py" --out "$ckpt" \
      --check "torch:$HERE/tests/fixtures/clip4idc.${stage##*:}.state_dict.tsv" || BAD=1
  done
done
if [ "$BAD" = 1 ]; then
  echo "clip4idc-data: a released checkpoint failed its check (set aside as *.bad); if gdown keeps failing (Drive quota), download the folders https://drive.google.com/drive/folders/1qOYVpZy57clJPF6AThsnO0Tfy4zq-gg1 and https://drive.google.com/drive/folders/18UfIvwKt0EE14EbogJycMmANpUJtsZbE in a browser into $DATA/ckpts/{pretrained,trained}/" >&2
  exit 1
fi
echo "clip4idc-data: done ($DATA)"
