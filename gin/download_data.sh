#!/usr/bin/env bash
# Real data for gin/ into DEST (default: <repo>/data/gin), resumable; what each step fetches is named in ../shared spec §8.
#   ZSGNet CSV annotations (Google Drive zip) -> DEST/{referit,flickr30k}/csv_dir/..., plus train_flat.csv (flattened)
#   ReferIt images (saiapr_tc-12.zip, UNC refer server) -> DEST/referit/saiapr_tc12_images/<id>.jpg (flat)
#   torchvision ResNet-50 ImageNet weights -> DEST/weights/resnet50-19c8e357.pth
#   spaCy en_core_web_md word vectors (the wheel spaCy's compatibility table names, pip-installed into PY's environment)
#   the released GIN and ZSGNet checkpoints (GIN README, OneDrive) -> DEST/weights/{gin,zsgnet}_{flickr30k,referit}.pth,
#     each checked against tests/data/{gin,zsgnet}.state_dict.tsv
#   the GIN authors' prepared datasets (OneDrive zips) -> DEST/gin_datasets/<name>/
# Downloads go through ../tools/fetch.py (resumable, verified; a wrong file is set aside as *.bad). Flickr30k images
# need the Illinois form (printed at the end), as does any OneDrive link that refuses the script. VLREPRO_MIRROR sends
# every download to a mirror (see tools/fetch.py); RESNET50_SHA256_PREFIX overrides the published digest for a mirror
# that serves other bytes (the tests' fake files).
set -euo pipefail
PY=${PY:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
FETCH="$HERE/../tools/fetch.py"
DEST=${1:-$(cd "$(dirname "$0")/.." && pwd)/data/gin}
mkdir -p "$DEST/weights" "$DEST/referit"
CSV_ZIP_ID=1oZ5llnA4btD9LSmnSB0GaZtTogskLwCe
REFERIT_ZIP=http://bvisionweb1.cs.unc.edu/licheng/referit/data/images/saiapr_tc-12.zip
REFERIT_ARCHIVE=https://web.archive.org/web/2020/http://bvisionweb1.cs.unc.edu/licheng/referit/data/images/saiapr_tc-12.zip
RESNET_URL=https://download.pytorch.org/models/resnet50-19c8e357.pth

if ! "$PY" "$FETCH" --probe https://download.pytorch.org; then
  echo "gin-data: no internet access (download.pytorch.org unreachable); nothing downloaded" >&2
  exit 1
fi

echo "[1/6] ResNet-50 ImageNet weights"
# torchvision names its files after the first 8 hex digits of the SHA-256
"$PY" "$FETCH" --out "$DEST/weights/resnet50-19c8e357.pth" --digest "${RESNET50_SHA256_PREFIX:-19c8e357}" \
  --check torch "$RESNET_URL"

echo "[2/6] ZSGNet CSV annotations"
if [ ! -d "$DEST/referit/csv_dir" ]; then
  # the zip holds ds_csv_ann/{flickr30k,referit,...}/csv_dir (or the same without ds_csv_ann/): merge it into DEST
  "$PY" "$FETCH" --out "$DEST/ds_csv_ann.zip" --check 'zip:*referit/csv_dir/*,*flickr30k/csv_dir/*' "gdrive:$CSV_ZIP_ID"
  rm -rf "$DEST/ds_csv_ann_tmp"
  unzip -q -o "$DEST/ds_csv_ann.zip" -d "$DEST/ds_csv_ann_tmp"
  cp -rn "$DEST"/ds_csv_ann_tmp/ds_csv_ann/* "$DEST"/ 2>/dev/null || cp -rn "$DEST"/ds_csv_ann_tmp/* "$DEST"/
  rm -rf "$DEST/ds_csv_ann_tmp"
fi
# The step users missed (ZSGNet issue #8): ds_info reads train_flat.csv, one row per phrase.
for csv_dir in $(find "$DEST" -name csv_dir -type d) $(find "$DEST" -path '*csv_dir/*' -name train.csv -printf '%h\n'); do
  if [ -f "$csv_dir/train.csv" ] && [ ! -f "$csv_dir/train_flat.csv" ]; then
    "$PY" "$(dirname "$0")/code/flatten_train.py" "$csv_dir/train.csv" "$csv_dir/train_flat.csv"
  fi
done

echo "[3/6] ReferIt (saiapr_tc-12) images"
if [ ! -d "$DEST/referit/saiapr_tc12_images" ]; then
  "$PY" "$FETCH" --out "$DEST/referit/saiapr_tc-12.zip" --check 'zip:*.jpg' "$REFERIT_ZIP" "$REFERIT_ARCHIVE" \
    || { echo "ReferIt images unavailable (the UNC server is down since 2022; see lichengunc/refer issues 14/15 for mirrors); put <id>.jpg files in $DEST/referit/saiapr_tc12_images/" >&2; exit 1; }
  rm -rf "$DEST/referit/saiapr_unzipped"
  unzip -q -o "$DEST/referit/saiapr_tc-12.zip" -d "$DEST/referit/saiapr_unzipped"
  mkdir -p "$DEST/referit/saiapr_tc12_images"
  # The zip nests images in per-folder subdirectories; ZSGNet reads them flat as <id>.jpg.
  find "$DEST/referit/saiapr_unzipped" -name '*.jpg' -exec mv -n {} "$DEST/referit/saiapr_tc12_images/" \;
  rm -rf "$DEST/referit/saiapr_unzipped"
fi

echo "[4/6] spaCy en_core_web_md vectors"
if ! "$PY" -c "import en_core_web_md" 2>/dev/null; then
  # what 'spacy download' does, with the table and the wheel fetched (resumable, mirrorable) by fetch.py: the model
  # version spaCy's compatibility table names for the installed spaCy, pip-installed from the file
  SPACY_VERSION=$("$PY" -c "import importlib.metadata as m; print(m.version('spacy'))" 2>/dev/null) \
    || { echo "gin-data: spaCy is missing from $PY's environment: pip install spacy, then rerun" >&2; exit 1; }
  SPACY_TMP="$DEST/spacy_download"
  rm -f "$SPACY_TMP/compatibility.json"  # the table changes with each spaCy release: never reuse an old copy
  "$PY" "$FETCH" --out "$SPACY_TMP/compatibility.json" --check json:spacy \
    https://raw.githubusercontent.com/explosion/spacy-models/master/compatibility.json
  MODEL_VERSION=$("$PY" - "$SPACY_TMP/compatibility.json" "$SPACY_VERSION" <<'PYEOF'
import json, re, sys
table, version = json.load(open(sys.argv[1]))["spacy"], sys.argv[2]
# spaCy's own rule: a pre-release is looked up as itself, a release by its minor version
key = version if re.search("[a-z]", version) else ".".join(version.split(".")[:2])
models = table.get(key, {}).get("en_core_web_md")
if not models:
    sys.exit(f"gin-data: spaCy's compatibility table names no en_core_web_md for spaCy {version}")
print(models[0])
PYEOF
  )
  WHEEL="en_core_web_md-$MODEL_VERSION-py3-none-any.whl"
  "$PY" "$FETCH" --out "$SPACY_TMP/$WHEEL" --check "zip:en_core_web_md/__init__.py" \
    "https://github.com/explosion/spacy-models/releases/download/en_core_web_md-$MODEL_VERSION/$WHEEL"
  "$PY" -m pip install --no-deps "$SPACY_TMP/$WHEEL"
fi

echo "[5/6] released checkpoints (OneDrive)"
MISSING=()
release() {  # name, manifest, share link
  "$PY" "$FETCH" --out "$DEST/weights/$1.pth" --check "torch:$HERE/tests/data/$2.state_dict.tsv" "onedrive:$3" \
    || MISSING+=("$1.pth: $3")
}
release zsgnet_flickr30k zsgnet "https://1drv.ms/u/s!AmrFUyZ_lDVGf68FpDXLIlzvlzY?e=jiQ8CH"
release gin_flickr30k gin "https://1drv.ms/u/s!AmrFUyZ_lDVGgQL6t2Cp4UvmzPiu?e=PIltdE"
release zsgnet_referit zsgnet "https://1drv.ms/u/s!AmrFUyZ_lDVGgQCAeaYj4-Kt_OXX?e=V2bJJt"
release gin_referit gin "https://1drv.ms/u/s!AmrFUyZ_lDVGgQErMsd5oJx-S9x-?e=dnjqMK"

echo "[6/6] the GIN authors' prepared datasets (OneDrive)"
dataset() {  # name, share link
  if [ ! -d "$DEST/gin_datasets/$1" ]; then
    if "$PY" "$FETCH" --out "$DEST/gin_datasets/$1.zip" --check zip "onedrive:$2"; then
      "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
        "$DEST/gin_datasets/$1.zip" "$DEST/gin_datasets/$1"
    else
      MISSING+=("gin_datasets/$1 (a zip): $2")
    fi
  fi
}
dataset flickr30k "https://1drv.ms/u/s!AmrFUyZ_lDVGfbdSDe1auqCob_g?e=nR9TwQ"
dataset referit "https://1drv.ms/u/s!AmrFUyZ_lDVGfEjmz6IXI1q1rRc?e=jIi8kH"
dataset flickr_split_0 "https://1drv.ms/u/s!AmrFUyZ_lDVGe-XCz_Gh36JcxL4?e=NNjVkh"
dataset flickr_split_1 "https://1drv.ms/u/s!AmrFUyZ_lDVGegJXY6YO8rowCMI?e=F5Oeu1"
dataset vg "https://1drv.ms/u/s!AmrFUyZ_lDVGfirzOmAE0CA00uo?e=1v2I6F"

echo "Manual step: Flickr30k images: fill the form at http://shannon.cs.illinois.edu/DenotationGraph/ and untar to $DEST/flickr30k/flickr30k_images/"
if [ ${#MISSING[@]} -gt 0 ]; then
  echo "These could not be fetched by script; open each link in a browser and save the file as named (under $DEST):" >&2
  printf '  %s\n' "${MISSING[@]}" >&2
  echo "  ZSGNet authors' original checkpoint (Google Drive): https://drive.google.com/file/d/1tFGm87vdbQUEX4PNfmgs-UQzthMO849t/view" >&2
  exit 1
fi
echo "gin-data: done ($DEST)"
