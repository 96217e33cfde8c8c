#!/usr/bin/env bash
# Regenerates the hashed lock files from pyproject.toml's dependencies (uv, run from anywhere):
#   deploy/requirements.lock    the image: installed with --require-hashes --no-deps, without
#                               opensearch-py's gRPC transport (opensearch-protobufs, grpcio,
#                               protobuf: ~19 MB the connector never imports)
#   deploy/build.lock           setuptools and wheel, to build the project itself without build
#                               isolation (so nothing unhashed is fetched); removed after
#   deploy/sam/requirements.txt the Lambda build: the same pins, the whole closure (sam build's
#                               pip resolves dependencies itself and cannot leave any out)
# tests/deploy/test_deploy.py fails when either file is out of date with pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
EXCLUDED=(opensearch-protobufs grpcio protobuf)
common=(pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet)
no_emit=()
for package in "${EXCLUDED[@]}"; do no_emit+=(--no-emit-package "$package"); done
"$UV" "${common[@]}" "${no_emit[@]}" --custom-compile-command "deploy/lock.sh" -o deploy/requirements.lock
"$UV" "${common[@]}" --custom-compile-command "deploy/lock.sh" -o deploy/sam/requirements.txt
printf 'setuptools>=68\nwheel>=0.40\n' | "$UV" pip compile - --python-version 3.11 --generate-hashes --quiet \
    --custom-compile-command "deploy/lock.sh" -o deploy/build.lock
