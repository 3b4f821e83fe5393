#!/bin/sh
# Copy the run checkpoints/$1 to checkpoints/$2 (e.g. to start SCST from an XE run), renaming its infos/histories.
# (ORT's script copied log_$1 -> log_$2; this reproduction's README commands use checkpoints/<id>.)
set -e
if [ $# -ne 2 ]; then echo "usage: $0 FROM_ID TO_ID" >&2; exit 2; fi
ROOT=${CHECKPOINT_ROOT:-checkpoints}
if [ ! -d "$ROOT/$1" ]; then echo "copy_model.sh: $ROOT/$1 not found" >&2; exit 1; fi
cp -r "$ROOT/$1" "$ROOT/$2"
cd "$ROOT/$2"
for f in infos_$1.pkl infos_$1-best.pkl histories_$1.pkl; do
  if [ -f "$f" ]; then mv "$f" "$(echo "$f" | sed "s/_$1/_$2/")"; fi
done
