#!/usr/bin/env bash
# Validates the OpenAPI document a running node serves (/api/v1/openapi.json) with
# openapi-spec-validator from PyPI (pinned, in .venv-openapi/), so generated clients can rely on
# it. One node on 127.0.0.1, stopped at the end. Called by scripts/test.sh.
#
#   tests/openapi/validate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
VENV=.venv-openapi
WANT="openapi-spec-validator==0.7.2"
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
pinned_venv "$VENV" "$WANT"

cargo build --locked --quiet -p fedimpute-node --bin fedimpute
BIN="$PWD/target/debug/fedimpute"
FED_DIR=$(mktemp -d)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh
trap 'fed_stop_all; rm -rf "$FED_DIR"' EXIT
fed_init a "OpenAPI check"
RUST_LOG=warn fed_start a
fed_curl a "$(fed_api a)/api/v1/openapi.json" > "$FED_DIR/openapi.json"
"$VENV/bin/openapi-spec-validator" "$FED_DIR/openapi.json"
