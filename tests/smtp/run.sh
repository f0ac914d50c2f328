#!/usr/bin/env bash
# Starts the mail tests' SMTP server (aiosmtpd from PyPI, pinned, in .venv-smtp/) on
# 127.0.0.1:PORT, keeping each accepted message in DIR. Runs until SIGTERM.
#
#   tests/smtp/run.sh PORT DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-smtp
WANT="aiosmtpd==1.4.6"
# Several tests may start servers at once: one of them makes the venv.
exec 9> "$VENV.lock"
flock 9
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
pinned_venv "$VENV" "$WANT"
flock -u 9
exec "$VENV/bin/python" tests/smtp/server.py --port "$1" --dir "$2"
