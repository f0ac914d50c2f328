#!/usr/bin/env bash
# Runs schemathesis (PyPI, pinned, in .venv-schemathesis/) against a live node with a
# researcher's API token: every operation of the served OpenAPI document gets the document's
# examples, its coverage cases and generated requests, valid and invalid. The run fails on any
# 5xx answer, and on any answer whose status, content type, headers or body the document does
# not describe, or that accepts a request the document says is invalid. One node on 127.0.0.1,
# stopped at the end; bounded by MAX_SECONDS (default 120) for the main pass and
# --max-examples per operation. Called by scripts/test.sh.
#
#   tests/openapi/schemathesis.sh [MAX_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
MAX_SECONDS=${1:-120}
VENV=.venv-schemathesis
WANT="schemathesis==4.32.5"
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
pinned_venv "$VENV" "$WANT"

cargo build --locked --quiet -p fedimpute-node --bin fedimpute
BIN="$PWD/target/debug/fedimpute"
FED_DIR=$(mktemp -d)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh
trap 'fed_stop_all; rm -rf "$FED_DIR"' EXIT
fed_init a "Schemathesis"
RUST_LOG=warn fed_start a
API=$(fed_api a)

# A researcher, as the callers of most of the API are; admin-only operations answer 403, which
# the document must describe too.
ADMIN=$(fed_login a admin "$(cat "$FED_DIR/admin-password")")
fed_curl a -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"username":"sam","role":"researcher"}' "$API/api/v1/users" > "$FED_DIR/sam.json"
PASSWORD="schemathesis passphrase 7"
ACCESS=$(fed_first_login a sam "$(fed_json "['generated_password']" < "$FED_DIR/sam.json")" "$PASSWORD")
TOKEN=$(fed_curl a -H "Authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d "{\"name\":\"schemathesis\",\"expires_in_days\":1,\"password\":\"$PASSWORD\"}" \
  "$API/api/v1/me/tokens" | fed_json "['token']")
fed_curl a "$API/api/v1/openapi.json" > "$FED_DIR/openapi.json"

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
CHECKS=$CHECKS,response_schema_conformance,negative_data_rejection
run() {
  "$VENV/bin/schemathesis" run "$FED_DIR/openapi.json" --url "$API" --tls-verify "$FED_DIR/a/tls/api.crt" \
    -H "Authorization: Bearer $TOKEN" --checks "$CHECKS" --phases examples,coverage,fuzzing \
    --max-examples 10 --seed 20261204 --no-color --report-dir "$FED_DIR/report" "$@"
}
# Revoking a token can hit the run's own token (its id is small and generated ids are too),
# after which every other operation only sees 401: that operation runs last, on its own.
run --max-time "$MAX_SECONDS" --exclude-operation-id revokeMyToken
run --max-time 20 --include-operation-id revokeMyToken
