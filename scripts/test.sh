#!/usr/bin/env bash
# Runs every check fedimpute's CI runs: formatting, lints, and the whole test suite (unit tests
# and multi-process tests that start real nodes on 127.0.0.1), a short run of every fuzz target,
# then the web UI in a real browser.
# Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-wes.sh    # the GA4GH WES reference server and cwltool, for the external-service tests
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# The multi-process tests run this binary; built here once, so no test has to run cargo inside
# cargo (a nested build waits on, or fails beside, the outer one's artifact lock).
cargo build --locked -p fedimpute-node --bin fedimpute
export FEDIMPUTE_BIN="$PWD/target/debug/fedimpute"
cargo test --workspace --locked
echo "== the Debian package: built, installed with dpkg -i, checked, removed (tests/package/deb.sh)"
tests/package/deb.sh
echo "== members behind firewalls: relayed jobs across network namespaces (tests/netns/relay.sh)"
tests/netns/relay.sh
echo "== the served OpenAPI document (openapi-spec-validator)"
tests/openapi/validate.sh
echo "== the API against its document (schemathesis, a researcher's token, about 2.5 minutes)"
tests/openapi/schemathesis.sh
echo "== fuzz smoke run (every cargo-fuzz target for 30 s from its seeds; a crash fails the run)"
# Unoptimised: minutes quicker to build, and 30 s of it still runs each target 10^4 to 10^6 times.
FUZZ_PROFILE=dev scripts/fuzz.sh 30
echo "== browser tests (Chromium + playwright-core; screenshots in docs/screenshots/)"
tests/browser/run.sh
