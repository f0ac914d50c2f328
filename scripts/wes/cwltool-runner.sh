#!/usr/bin/env bash
# The runner a wes-service (GA4GH WES reference server, cwl_runner backend) starts for each run:
#   wes-server --backend=wes_service.cwl_runner --opt runner=scripts/wes/cwltool-runner.sh
# It runs cwltool ($CWLTOOL, default: cwltool on PATH) with the server's arguments, then writes
# the exit code into the run's folder (the parent of --outdir). wes-service otherwise learns a
# run's end only by waitpid() on it, and reports a finished run as failed (exit 255) when the
# process was reaped before it asked; with `exit_code` present it reads that instead.
set -uo pipefail
outdir=""
for arg in "$@"; do
  case "$arg" in --outdir=*) outdir=${arg#--outdir=} ;; esac
done
"${CWLTOOL:-cwltool}" "$@"
rc=$?
[ -n "$outdir" ] && echo "$rc" > "$(dirname "$outdir")/exit_code"
exit "$rc"
