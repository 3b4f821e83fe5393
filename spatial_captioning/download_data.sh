#!/usr/bin/env bash
# Download what the README names into DEST (default data/spatial_captioning), resumably, then run the prepro steps.
#   bash download_data.sh [DEST]        (needs ~60 GB; SKIP_IMAGES=1 skips the COCO images, SKIP_BU=1 the features)
# Every download goes through ../tools/fetch.py (resumable, checked; a wrong or partial file is set aside as *.bad,
# never unpacked). VLREPRO_MIRROR sends every download to a mirror (see tools/fetch.py).
set -euo pipefail
DEST=${1:-data/spatial_captioning}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python}
mkdir -p "$DEST"
cd "$DEST"

KARPATHY=http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip
BU=https://imagecaption.blob.core.windows.net/imagecaption/trainval.zip
COCO_TRAIN=http://images.cocodataset.org/zips/train2014.zip
COCO_VAL=http://images.cocodataset.org/zips/val2014.zip
COCO_ANN=http://images.cocodataset.org/annotations/annotations_trainval2014.zip
FIX=https://msvocds.blob.core.windows.net/images/262993_z.jpg
RESNET_FOLDER=0B7fNdx_jAqhtbVYzOURMdDNHSGM

if ! "$PY" "$HERE/../tools/fetch.py" --probe "$COCO_ANN"; then
  echo "spatial_captioning-data: cannot reach images.cocodataset.org (offline?); nothing downloaded" >&2
  exit 1
fi
# fetch URL OUT [CHECK]: resumable, verified download (../tools/fetch.py); a wrong or partial file is set aside as OUT.bad
fetch() { "$PY" "$HERE/../tools/fetch.py" --out "$2" ${3:+--check "$3"} "$1"; }

fetch "$KARPATHY" caption_datasets.zip zip:dataset_coco.json
unzip -o -q caption_datasets.zip dataset_coco.json
fetch "$COCO_ANN" annotations_trainval2014.zip zip:annotations/captions_val2014.json
mkdir -p coco-caption/annotations
unzip -o -q -j annotations_trainval2014.zip annotations/captions_val2014.json -d coco-caption/annotations

if [ "${SKIP_IMAGES:-0}" != 1 ]; then
  mkdir -p images
  fetch "$COCO_TRAIN" train2014.zip zip:train2014 && unzip -n -q train2014.zip -d images
  fetch "$COCO_VAL" val2014.zip zip:val2014 && unzip -n -q val2014.zip -d images
  # One corrupted COCO image (karpathy/neuraltalk2#4); the Azure blob may be gone.
  fetch "$FIX" images/COCO_train2014_000000167126.fixed.jpg \
    && cp images/COCO_train2014_000000167126.fixed.jpg images/train2014/COCO_train2014_000000167126.jpg \
    || echo "warning: $FIX unavailable"
fi
if [ "${SKIP_BU:-0}" != 1 ]; then
  # ~22 GB; public access to this Azure blob has been refused since 2023 (self-critical.pytorch#62, #81):
  # if it fails, get the adaptive 10-100 box features elsewhere and unzip them into bu_data/trainval/.
  mkdir -p bu_data
  # the four TSVs scripts/make_bu_data.py reads
  BU_TSVS=$(printf 'trainval/karpathy_%s_resnet101_faster_rcnn_genome.tsv%s,' test '' val '' train .0 train .1)
  if fetch "$BU" bu_data/trainval.zip "zip:${BU_TSVS%,}"; then unzip -n -q bu_data/trainval.zip -d bu_data; fi
fi
"$PY" "$HERE/../tools/fetch.py" --out imagenet_weights --check torch "gdrive-folder:$RESNET_FOLDER" \
  || echo "warning: resnet101.pth (Google Drive folder https://drive.google.com/drive/folders/$RESNET_FOLDER) not fetched; only needed by prepro_feats.py / eval.py --image_folder"

"$PY" "$HERE/scripts/prepro_labels.py" --input_json dataset_coco.json --output_json cocotalk.json --output_h5 cocotalk
"$PY" "$HERE/scripts/prepro_ngrams.py" --input_json dataset_coco.json --dict_json cocotalk.json --output_pkl coco-train --split train
if [ -d bu_data/trainval ]; then
  "$PY" "$HERE/scripts/make_bu_data.py" --downloaded_feats bu_data --output_dir cocobu
  "$PY" "$HERE/prepro_areas.py" --input_json dataset_coco.json --images_root images --input_dir cocobu_box \
    --output_dir cocobu_box_vec --num_grids 144
fi
echo "spatial_captioning data ready in $(pwd)"
