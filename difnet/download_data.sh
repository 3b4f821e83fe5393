#!/usr/bin/env bash
# Fetch DIFNet's real data and released weights into $1 (default ../data/difnet), resumable.
#   m2_annotations/   M²'s annotations.zip (COCO captions + Karpathy split id files)
#   segmentations/    segmentations.zip (UPSNet class maps, 133x7x7 per image, ~83 MB)
#   DIFNet_lrp.pth    the released checkpoint (mode difnet_lrp; formerly DIFNet.pth, same Drive id)
#   vocab.pkl         DIFNet's own vocabulary (10,201 tokens; the weights need its indices)
#   coco_grid_feats2.hdf5  grid features: Baidu Pan only (manual step, printed below)
set -euo pipefail
DEST=${1:-../data/difnet}
PY=${PY:-python}
mkdir -p "$DEST"
cd "$DEST"

if ! curl -sI --max-time 15 https://drive.google.com >/dev/null 2>&1; then
  echo "difnet-data: no internet connection (drive.google.com unreachable); the real data cannot be fetched here. Use 'make difnet-toy' for the toy set." >&2
  exit 1
fi

fetch_drive() {  # id, output file (gdown resumes partial downloads with --continue)
  [ -s "$2" ] || "$PY" -m gdown --continue "$1" -O "$2"
}

if [ ! -f m2_annotations/captions_train2014.json ]; then
  curl -L -C - -o annotations.zip \
    https://ailb-web.ing.unimore.it/publicfiles/drive/meshed-memory-transformer/annotations.zip \
    || fetch_drive 1i8mqKFKhqvBr8kEp3DbIh9-9UNAfKGmE annotations.zip
  rm -rf m2_annotations annotations && unzip -q annotations.zip && mv annotations m2_annotations
fi
if [ ! -d segmentations/val2014 ]; then
  fetch_drive 1R7GL9FTZgc0cpCoJ6UGWNuhvAiDciab7 segmentations.zip
  unzip -q segmentations.zip
fi
fetch_drive 1aDuiiIJomAvQlS-N7VTsqD45rnOt5Oj2 DIFNet_lrp.pth
[ -s vocab.pkl ] || curl -L -C - -o vocab.pkl \
  https://raw.githubusercontent.com/mrwu-mac/DIFNet/5ef4c9a/vocab.pkl
if [ ! -f coco_grid_feats2.hdf5 ]; then
  echo "difnet-data: the grid features are on Baidu Pan only: download 'coco_grid_feats' from https://pan.baidu.com/s/1myelTYJE8a1HDZHkoccfIA (code: cvpr) and save it as $(pwd)/coco_grid_feats2.hdf5" >&2
  exit 2
fi
echo "difnet-data: complete in $(pwd)"
