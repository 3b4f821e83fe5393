#!/usr/bin/env bash
# Fetch DIFNet's real data and released weights into $1 (default ../data/difnet), resumable.
#   m2_annotations/   M²'s annotations.zip (COCO captions + Karpathy split id files)
#   segmentations/    segmentations.zip (UPSNet class maps, 133x7x7 per image, ~83 MB; two Drive ids, tried in turn)
#   DIFNet_lrp.pth    the released checkpoint (mode difnet_lrp; formerly DIFNet.pth, same Drive id)
#   vocab.pkl         DIFNet's own vocabulary (10,201 tokens; the weights need its indices)
#   coco_grid_feats2.hdf5  grid features: Baidu Pan only (manual step, printed below; exit 2 until it is there)
# Downloads go through ../tools/fetch.py: resumable, each file checked (zip members, checkpoint keys and shapes against
# tests/fixtures/difnet.difnet_lrp.state_dict.tsv, the grid features' HDF5); a wrong or partial file is set aside as
# *.bad, never used. VLREPRO_MIRROR sends every download to a mirror (see tools/fetch.py).
set -euo pipefail
DEST=${1:-../data/difnet}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
FETCH="$HERE/../tools/fetch.py"
mkdir -p "$DEST"
cd "$DEST"

if ! "$PY" "$FETCH" --probe https://drive.google.com; then
  echo "difnet-data: no internet connection (drive.google.com unreachable); the real data cannot be fetched here. Use 'make difnet-toy' for the toy set." >&2
  exit 1
fi

if [ ! -f m2_annotations/captions_train2014.json ]; then
  "$PY" "$FETCH" --out annotations.zip --check zip:annotations/captions_train2014.json \
    https://ailb-web.ing.unimore.it/publicfiles/drive/meshed-memory-transformer/annotations.zip \
    gdrive:1i8mqKFKhqvBr8kEp3DbIh9-9UNAfKGmE
  rm -rf m2_annotations annotations && unzip -q annotations.zip && mv annotations m2_annotations
fi
if [ ! -d segmentations/val2014 ]; then
  # 1x6RVn... is the id in the README version our users were given; the README later moved to 1R7GL9...
  "$PY" "$FETCH" --out segmentations.zip --check zip:segmentations/val2014 \
    gdrive:1x6RVn01eZKRtoNfZZh4tUSF57N40YxAW gdrive:1R7GL9FTZgc0cpCoJ6UGWNuhvAiDciab7
  unzip -q segmentations.zip
fi
"$PY" "$FETCH" --out DIFNet_lrp.pth --check "torch:$HERE/tests/fixtures/difnet.difnet_lrp.state_dict.tsv" \
  gdrive:1aDuiiIJomAvQlS-N7VTsqD45rnOt5Oj2
"$PY" "$FETCH" --out vocab.pkl https://raw.githubusercontent.com/mrwu-mac/DIFNet/5ef4c9a/vocab.pkl
if [ ! -f coco_grid_feats2.hdf5 ]; then
  echo "difnet-data: the grid features are on Baidu Pan only: download 'coco_grid_feats' from https://pan.baidu.com/s/1myelTYJE8a1HDZHkoccfIA (code: cvpr) and save it as $(pwd)/coco_grid_feats2.hdf5" >&2
  exit 2
fi
"$PY" "$FETCH" --out coco_grid_feats2.hdf5 --check hdf5
echo "difnet-data: complete in $(pwd)"
