#!/usr/bin/env bash
# Regenerates the Python code for proto/dora/api/v1 into dora/api/v1 (or into
# the directory given as $1, which hack/verify-gen.sh uses to diff). descriptors.binpb
# keeps the protos' comments for `doractl explain` (dora/ctl/explain.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$out/dora/api/v1"
rm -f "$out"/dora/api/v1/*_pb2*.py "$out"/dora/api/v1/*_pb2*.pyi "$out"/dora/api/v1/descriptors.binpb
"$py" -m grpc_tools.protoc \
  --proto_path=proto \
  --python_out="$out" \
  --mypy_out="$out" \
  --grpc_python_out="$out" \
  --mypy_grpc_out="$out" \
  --descriptor_set_out="$out/dora/api/v1/descriptors.binpb" --include_source_info \
  --plugin=protoc-gen-mypy="$(dirname "$py")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$py")/protoc-gen-mypy_grpc" \
  proto/dora/api/v1/*.proto
cat > "$out/dora/api/v1/__init__.py" <<'PY'
"""Generated protobuf and gRPC code for dora.api.v1: regenerate with `make gen`, never edit."""
PY
