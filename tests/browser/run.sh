#!/usr/bin/env bash
# Browser tests of the web UI: a real two-node federation on 127.0.0.1 (A without panels, B
# hosting the simulated panel), driven in Debian's Chromium through playwright-core. Writes
# screenshots of the main pages to docs/screenshots/. Called by scripts/test.sh.
#
#   tests/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

[ -x /usr/bin/chromium ] || { echo "Chromium is missing: run scripts/install-deps.sh" >&2; exit 1; }
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

cargo build --locked --quiet -p fedimpute-node --bin fedimpute
BIN="$ROOT/target/debug/fedimpute"
FED_DIR=$(mktemp -d)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh
trap 'fed_stop_all; rm -rf "$FED_DIR"' EXIT

fed_origin_and_host Browser browser-test sim-afr
# Two more panels at B, one per simulated population, for a meta-imputation.
for panel in panel_a panel_b; do
  "$BIN" panel add --config "$FED_DIR/b/node.toml" --id "$panel" --name "Population ${panel#panel_} (chr20)" \
    --build hg19 --population AFR --vcf "tests/data/two_pop/$panel.vcf.gz" --map tests/data/two_pop/map.txt >/dev/null
done
fed_set a poll_secs 1
fed_start a
fed_start b
fed_wait_catalog a 3  # (panel, host) pairs: sim-afr, panel_a, panel_b at B

# The next config version, signed but not yet applied, expiring in 20 days: the last test
# installs it at A and expects the federation page's warning.
cp "$FED_DIR/federation.json" "$FED_DIR/federation-v2.json"
"$BIN" federation bump "$FED_DIR/federation-v2.json" --expires-in-days 20 >/dev/null
"$BIN" federation sign "$FED_DIR/federation-v2.json" --key "$FED_DIR/federation-admin.key" >/dev/null

mkdir -p docs/screenshots
NEXT_CONFIG="$FED_DIR/federation-v2.json" A_URL=$(fed_api a) A_CA="$FED_DIR/a/tls/api.crt" ADMIN_PASSWORD=$(cat "$FED_DIR/admin-password") \
  TARGETS="$ROOT/tests/data/targets.vcf.gz" TWO_POP_TARGETS="$ROOT/tests/data/two_pop/targets.vcf.gz" SCREENSHOTS="$ROOT/docs/screenshots" CHROMIUM=/usr/bin/chromium \
  node --test --test-concurrency=1 tests/browser/ui.test.mjs || {
    echo "--- node A log (tail) ---"; tail -n 40 "$FED_DIR/a.log"
    echo "--- node B log (tail) ---"; tail -n 40 "$FED_DIR/b.log"
    exit 1
  }
