#!/usr/bin/env bash
# fedimpute demo: a three-node federation on this machine that imputes a sample VCF on a panel
# hosted by a peer.
#
#   scripts/demo.sh          # set up, run the demo, stop the nodes at the end
#   scripts/demo.sh --keep   # leave the nodes running afterwards
#
# It installs what is missing (Rust build tools, Beagle, Minimac4, bcftools, tabix), builds
# fedimpute, and under ./demo-data/:
#   - initialises three nodes, A, B and C, listening on 127.0.0.1;
#   - makes a federation admin key and a signed federation config listing the three nodes;
#   - registers the simulated reference panel from tests/data/ on B and on C (A has none);
#   - starts the nodes, which connect over mutually authenticated TLS and advertise their panels;
#   - creates researcher 'rosalind' at A, who submits the sample array VCF at A for panel sim-afr:
#     A checks the input, picks B or C, sends the job, and follows it live while the host
#     imputes with Beagle; the results come back to A, and the host deletes its copies;
#   - downloads the results from A, scores them against the simulated truth, and shows the
#     job's trail in the audit logs of A and of the host.
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
FED_DIR="$ROOT/demo-data"
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh

for node in a b c; do
  if pid=$(pgrep -f "fedimpute run --config $FED_DIR/node-$node/node.toml"); then
    say "stopping demo node $node left from a previous run"
    kill -TERM $pid || true
  fi
done
sleep 1
rm -rf "$FED_DIR"
json() { fed_json "$@"; }
declare -A INSTITUTION=([a]="Demo Institute A" [b]="Demo Institute B" [c]="Demo Institute C")
for node in a b c; do
  say "initialising node $node for '${INSTITUTION[$node]}'"
  fed_init "node-$node" "${INSTITUTION[$node]}"
done

say "the federation admin makes a key and signs a member list of A, B and C; each node installs it"
fed_sign_config demo-federation node-a node-b node-c
"$BIN" federation show "$FED_DIR/federation.json"

for node in b c; do
  say "registering the simulated reference panel on node $node (validate, index, bref3, msav)"
  "$BIN" panel add --config "$FED_DIR/node-$node/node.toml" --id sim-afr --name "Simulated panel (1,000 samples, chr20)" \
    --build hg19 --population AFR --vcf tests/data/panel.vcf.gz --map tests/data/map.txt
done

say "starting the three nodes"
[ "$KEEP" = 1 ] || trap fed_stop_all EXIT
declare -A API
for node in a b c; do
  fed_start "node-$node"
  API[$node]=$(fed_api "node-$node")
  echo "node $node: API at ${API[$node]} (log: demo-data/node-$node.log)"
done
curl_at() { local node=$1; shift; fed_curl "node-$node" "$@"; }
login() { fed_login "node-$1" "$2" "$3"; }
PWFILE="$FED_DIR/admin-password"
ADMIN_A=$(login a admin "$(cat "$PWFILE")")

say "waiting until A sees B's and C's panels in the federation catalog"
fed_wait_catalog node-a 2
curl_at a -H "Authorization: Bearer $ADMIN_A" "${API[a]}/api/v1/catalog/panels" | python3 -c 'import json,sys
for p in json.load(sys.stdin):
    for h in p["hosts"]:
        print("  panel %-8s %5d samples %6d sites  at %-17s reachable=%s" % (p["id"], p["samples"], p["sites"], h["institution"], h["reachable"]))'

say "creating researcher 'rosalind' at A"
curl_at a -H "Authorization: Bearer $ADMIN_A" -H 'content-type: application/json' \
  -d '{"username":"rosalind","role":"researcher"}' "${API[a]}/api/v1/users" > "$FED_DIR/rosalind.json"
R_PASSWORD="a demo passphrase of her own"
say "rosalind logs in with her one-time password and chooses her own, as the node requires"
fed_first_login node-a rosalind "$(json "['generated_password']" < "$FED_DIR/rosalind.json")" "$R_PASSWORD" >/dev/null

say "rosalind logs in once from the CLI: A's certificate is self-signed, so she pins it by the fingerprint A's admin gave her; her profile keeps a new API token"
# Her own machine's config folder, inside the demo's.
export XDG_CONFIG_HOME="$FED_DIR/rosalind-config"
A_FINGERPRINT=$(python3 -c 'import hashlib, ssl, sys
der = ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())
print(":".join("%02X" % b for b in hashlib.sha256(der).digest()))' "$FED_DIR/node-a/tls/api.crt")
printf '%s\n' "$R_PASSWORD" | "$BIN" login --node "${API[a]}" --user rosalind --fingerprint "$A_FINGERPRINT" --password-file -
"$BIN" panels

say "rosalind submits the sample array VCF at A for panel sim-afr (hosted by B and C), follows it live, and downloads the results (each file checked against its SHA-256)"
"$BIN" job submit --panel sim-afr --build hg19 --engine beagle --name "demo chr20" --allow-resubmit \
  --wait --download "$FED_DIR/results" tests/data/targets.vcf.gz | tee "$FED_DIR/job.txt"
JOB_ID=$(head -n 1 "$FED_DIR/job.txt")
ls -l "$FED_DIR/results"

say "accuracy against the simulated truth at the sites the array did not measure"
python3 scripts/accuracy.py --imputed "$FED_DIR/results/chr20.dose.vcf.gz" --truth tests/data/truth.vcf.gz \
  --targets tests/data/targets.vcf.gz --panel tests/data/panel.vcf.gz

HOST_PEER=$(curl_at a -H "Authorization: Bearer $ADMIN_A" "${API[a]}/api/v1/jobs/$JOB_ID" | json "['peer']")
HOST=b
[ "$("$BIN" federation whoami --config "$FED_DIR/node-c/node.toml" | json "['peer_id']")" = "$HOST_PEER" ] && HOST=c
ADMIN_HOST=$(login $HOST admin "$(cat "$PWFILE")")
show_audit() {
  curl_at "$1" -H "Authorization: Bearer $2" "${API[$1]}/api/v1/audit?limit=200" | python3 -c 'import json,sys
job = sys.argv[1]
for e in reversed(json.load(sys.stdin)["entries"]):
    if e["target"] == job:
        print("  #%-3s %-22s %-8s %s" % (e["seq"], e["action"], e["outcome"], e["actor"][:60]))' "$JOB_ID"
}
say "the job in A's audit log (the origin: it records the user)"
show_audit a "$ADMIN_A"
say "the job in ${INSTITUTION[$HOST]}'s audit log (the host: the origin node and a pseudonym, never the user name)"
show_audit $HOST "$ADMIN_HOST"
echo -n "the job at the host now: "
curl_at $HOST -H "Authorization: Bearer $ADMIN_HOST" "${API[$HOST]}/api/v1/jobs/$JOB_ID" | json "['state']"
for node in a b c; do "$BIN" audit verify --config "$FED_DIR/node-$node/node.toml"; done
if [ "$KEEP" != 1 ]; then
  say "rosalind logs out: her profile's API token is revoked at A"
  "$BIN" logout
fi

say "done"
if [ "$KEEP" = 1 ]; then
  echo "The nodes keep running (pids ${FED_PIDS[*]}): A at ${API[a]}, B at ${API[b]}, C at ${API[c]}"
  echo "Admin password (all three): demo-data/admin-password. Stop them with: kill ${FED_PIDS[*]}"
else
  echo "Stopping the nodes (use --keep to leave them running)."
fi
