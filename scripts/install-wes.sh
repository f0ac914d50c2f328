#!/usr/bin/env bash
# Installs the GA4GH WES reference server (wes-service) and cwltool into .venv-wes/, for the tests
# that run jobs through a WES service. Versions are pinned; safe to run repeatedly.
#
#   scripts/install-wes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-wes
WANT="wes-service==5.0 cwltool==3.3.20260925135507"
if [ -x "$VENV/bin/wes-server" ] && [ -x "$VENV/bin/cwltool" ] && [ -f "$VENV/.pins" ] && [ "$(cat "$VENV/.pins")" = "$WANT" ]; then
  exit 0
fi
echo "[install-wes] installing $WANT into $VENV" >&2
python3 -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install --quiet --disable-pip-version-check $WANT
echo "$WANT" > "$VENV/.pins"
