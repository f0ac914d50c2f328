#!/usr/bin/env bash
# fedimpute demo: from a fresh Debian machine to a running node you can log in to.
#
#   scripts/demo.sh          # set up, run the demo, stop the node at the end
#   scripts/demo.sh --keep   # leave the node running afterwards
#
# What it does now: installs what is missing (Rust build tools, Beagle, Minimac4, bcftools,
# tabix), builds fedimpute, initialises a node under ./demo-data/, registers the simulated
# reference panel from tests/data/, starts the node, creates a researcher with an API token,
# imputes the sample genotyping-array VCF with Beagle through the node (following it live),
# downloads the results and scores them against the truth, then shows the audit log and
# verifies its hash chain. (The next layer turns this into a three-node federation that
# imputes on a peer's panel.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

say "building fedimpute"
cargo build --locked -p fedimpute-node --bin fedimpute
BIN="$ROOT/target/debug/fedimpute"

DATA="$ROOT/demo-data/node-a"
if [ -f "$DATA/api.addr" ] && pid=$(pgrep -f "fedimpute run --config $DATA/node.toml"); then
  say "stopping the demo node left from a previous run"
  kill -TERM $pid || true; sleep 1
fi
rm -rf "$DATA"; mkdir -p "$DATA"
PWFILE="$ROOT/demo-data/admin-password"
umask 077
python3 -c 'import secrets; print("demo-" + secrets.token_urlsafe(18))' > "$PWFILE"

say "initialising a node for 'Demo Institute A'"
"$BIN" init --data-dir "$DATA" --institution "Demo Institute A" --api-listen 127.0.0.1:0 \
  --p2p-listen /ip4/127.0.0.1/tcp/0 --admin-password-file "$PWFILE"

say "registering the simulated reference panel (validate, index, bref3 for Beagle, msav for Minimac4)"
"$BIN" panel add --config "$DATA/node.toml" --id sim-afr --name "Simulated panel (1,000 samples, chr20)" \
  --build hg19 --population AFR --vcf tests/data/panel.vcf.gz --map tests/data/map.txt

say "starting the node"
"$BIN" run --config "$DATA/node.toml" >"$ROOT/demo-data/node-a.log" 2>&1 &
NODE_PID=$!
stop_node() { kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true; }
[ "$KEEP" = 1 ] || trap stop_node EXIT
for _ in $(seq 1 300); do [ -s "$DATA/api.addr" ] && break; sleep 0.1; done
[ -s "$DATA/api.addr" ] || { echo "node did not start; see demo-data/node-a.log" >&2; exit 1; }
API="https://$(cat "$DATA/api.addr")"
CURL=(curl -sS --fail-with-body --cacert "$DATA/tls/api.crt")
echo "API at $API (log: demo-data/node-a.log)"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

say "logging in as admin"
ADMIN_TOKEN=$("${CURL[@]}" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$(cat "$PWFILE")\"}" "$API/api/v1/auth/login" | json "['access_token']")
"${CURL[@]}" -H "Authorization: Bearer $ADMIN_TOKEN" "$API/api/v1/me"; echo

say "creating researcher 'rosalind' (the node generates her password)"
"${CURL[@]}" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"username":"rosalind","role":"researcher"}' "$API/api/v1/users" > "$ROOT/demo-data/rosalind.json"
RPW=$(json "['generated_password']" < "$ROOT/demo-data/rosalind.json")
R_TOKEN=$("${CURL[@]}" -H 'content-type: application/json' \
  -d "{\"username\":\"rosalind\",\"password\":\"$RPW\"}" "$API/api/v1/auth/login" | json "['access_token']")

say "rosalind creates an API token for her scripts and uses it"
API_TOKEN=$("${CURL[@]}" -H "Authorization: Bearer $R_TOKEN" -H 'content-type: application/json' \
  -d '{"name":"analysis scripts","expires_in_days":30}' "$API/api/v1/me/tokens" | json "['token']")
"${CURL[@]}" -H "Authorization: Bearer $API_TOKEN" "$API/api/v1/me"; echo
echo -n "rosalind asking for the user list (admin only): "
curl -s -o /dev/null -w '%{http_code}\n' --cacert "$DATA/tls/api.crt" -H "Authorization: Bearer $API_TOKEN" "$API/api/v1/users"

say "rosalind imputes the sample array VCF on panel sim-afr with Beagle, following it live"
"$BIN" job submit --node "$API" --token "$API_TOKEN" --ca-cert "$DATA/tls/api.crt" --panel sim-afr --build hg19 \
  --engine beagle --name "demo chr20" --watch tests/data/targets.vcf.gz | tee "$ROOT/demo-data/job.txt"
JOB_ID=$(head -n 1 "$ROOT/demo-data/job.txt")

say "downloading the results"
rm -rf "$ROOT/demo-data/results"
"$BIN" job download --node "$API" --token "$API_TOKEN" --ca-cert "$DATA/tls/api.crt" --out "$ROOT/demo-data/results" "$JOB_ID"
ls -l "$ROOT/demo-data/results"

say "accuracy against the simulated truth at the sites the array did not measure"
python3 scripts/accuracy.py --imputed "$ROOT/demo-data/results/chr20.dose.vcf.gz" --truth tests/data/truth.vcf.gz \
  --targets tests/data/targets.vcf.gz --panel tests/data/panel.vcf.gz

say "the audit log (newest first)"
"${CURL[@]}" -H "Authorization: Bearer $ADMIN_TOKEN" "$API/api/v1/audit?limit=12" |
  python3 -c 'import json,sys
for e in json.load(sys.stdin)["entries"]:
    print("  #%-3s %-14s %-8s %-16s %s" % (e["seq"], e["action"], e["outcome"], e["actor"], e["target"]))'
"$BIN" audit verify --config "$DATA/node.toml"

say "done"
if [ "$KEEP" = 1 ]; then
  echo "The node keeps running (pid $NODE_PID) at $API"
  echo "Admin password: demo-data/admin-password. Stop it with: kill $NODE_PID"
else
  echo "Stopping the node (use --keep to leave it running)."
fi
