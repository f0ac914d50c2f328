#!/usr/bin/env bash
# Members behind firewalls, tested across real network namespaces (issue 18, part 1).
#
#   tests/netns/relay.sh        # as root; uses FEDIMPUTE_BIN or target/debug/fedimpute
#
# Builds seven namespaces joined by a bridge (in an eighth): A (an open member), B (an open
# member that serves as a relay and hosts panel sim-b), C (a hospital behind a firewall that drops
# every inbound connection and lets it dial out only to B; it hosts panel sim-c and has
# reachability = "outbound"), D and E (two members behind stateful firewalls that drop inbound
# connections but let them dial out anywhere), and X (a node that is not a member). Addresses are given only
# inside those namespaces, in a private range the machine does not use; nothing is added to the
# machine's own namespace. Checks:
#   - the firewall does what it says (A cannot dial C, C cannot dial A, C can dial B);
#   - every catalog is complete, C included; A reaches C relayed via B (the federation view says
#     so) and C reaches B directly;
#   - D and E, which neither can accept a connection, first meet through the relay, and a hole
#     punch (DCUtR) then connects them directly;
#   - a job submitted at C runs on B's panel, and a job submitted at A runs on C's panel (through
#     the relay), and both return results;
#   - a capture on the relay's link shows the job's input and results crossed it, and never as
#     their bytes: no window of them appears in the relay's traffic, while the same file sent
#     in the clear over the same link is found (the control that the search works);
#   - X, with a forged member list naming B and C, is refused by B and never reaches C;
#   - every node's audit chain verifies.
# Skips with a message where namespaces cannot be made (not root, or no CAP_SYS_ADMIN).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

PROBE="fi-probe-$$"
if [ "$(id -u)" -ne 0 ] || ! ip netns add "$PROBE" 2>/dev/null; then
  echo "SKIP tests/netns/relay.sh: network namespaces cannot be created here (needs root with CAP_SYS_ADMIN)"
  exit 0
fi
ip netns del "$PROBE"
for tool in nft tcpdump python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh" >&2; exit 1; }
done

BIN=${FEDIMPUTE_BIN:-$ROOT/target/debug/fedimpute}
[ -x "$BIN" ] || { echo "no fedimpute binary at $BIN (cargo build -p fedimpute-node)" >&2; exit 1; }
FED_DIR=$(mktemp -d /tmp/fedimpute-netns.XXXXXX)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh

say() { printf '\n== netns: %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  for log in "$FED_DIR"/*.log; do echo "--- tail of $log" >&2; tail -n 30 "$log" >&2; done
  exit 1
}

# A /24 that no address or route of this machine's own namespace overlaps.
SUBNET=$(python3 - "$(ip -br addr)" "$(ip route)" <<'EOF'
import ipaddress, re, sys
used = [ipaddress.ip_network(m, strict=False) for m in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?\b", " ".join(sys.argv[1:]))]
for third in range(10, 250):
    net = ipaddress.ip_network(f"10.231.{third}.0/24")
    if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
        print(f"10.231.{third}")
        break
else:
    sys.exit("no free 10.231.x.0/24")
EOF
)
NS_PREFIX="fi$$"
SWITCH="$NS_PREFIX-sw"
NODES=(a b c d e x)
declare -A OCTET=([a]=1 [b]=2 [c]=3 [d]=4 [e]=5 [x]=9)
TCPDUMP_PID=""
cleanup() {
  set +e
  [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null
  fed_stop_all
  # Whatever else still runs in the namespaces (a helper left by a failed step) goes with them.
  for n in "${NODES[@]}"; do
    ip netns pids "$NS_PREFIX-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$NS_PREFIX-$n" 2>/dev/null
  done
  ip netns del "$SWITCH" 2>/dev/null
  [ "${KEEP_NETNS_DIR:-0}" = 1 ] || rm -rf "$FED_DIR"
}
trap cleanup EXIT

say "namespaces on $SUBNET.0/24: a bridge in $SWITCH, one veth to each of A, B, C, D, E and X"
ip netns add "$SWITCH"
ip -n "$SWITCH" link add br0 type bridge
ip -n "$SWITCH" link set br0 up
for n in "${NODES[@]}"; do
  ns="$NS_PREFIX-$n"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "v$n" netns "$SWITCH"
  ip -n "$SWITCH" link set "v$n" master br0 up
  ip -n "$ns" addr add "$SUBNET.${OCTET[$n]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  FED_NETNS[$n]=$ns
  FED_IP[$n]="$SUBNET.${OCTET[$n]}"
done
IP_A=${FED_IP[a]} IP_B=${FED_IP[b]} IP_C=${FED_IP[c]}

# Every firewall here lets in only replies to connections the namespace opened itself.
INBOUND_REPLIES_ONLY='chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
  }'
say "C's firewall: inbound only replies; outbound only to the relay B"
ip netns exec "$NS_PREFIX-c" nft -f - <<EOF
table inet hospital {
  $INBOUND_REPLIES_ONLY
  chain output {
    type filter hook output priority 0; policy drop;
    oif "lo" accept
    ct state established,related accept
    ip daddr $IP_B tcp dport 4001 accept
  }
}
EOF
say "D's and E's firewalls: inbound only replies (connection tracking); outbound anywhere"
for n in d e; do
  ip netns exec "$NS_PREFIX-$n" nft -f - <<EOF
table inet office {
  $INBOUND_REPLIES_ONLY
}
EOF
done
# can_dial NAME IP PORT: exit 0 if a TCP connection from NAME's namespace to IP:PORT opens.
can_dial() {
  fed_in "$1" python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(2)
try: s.connect((sys.argv[1], int(sys.argv[2])))
except OSError: sys.exit(1)' "$2" "$3"
}
# A listener on every node's p2p port, only to prove the firewall before the nodes start.
for n in a b c d e; do
  fed_in "$n" python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 4001)); s.listen()
time.sleep(8)' "${FED_IP[$n]}" &
done
sleep 0.5
can_dial a "$IP_C" 4001 && fail "A could open a connection to C through C's firewall"
can_dial c "$IP_A" 4001 && fail "C could dial A; its firewall lets it reach only B"
can_dial c "$IP_B" 4001 || fail "C cannot dial the relay B"
can_dial a "$IP_B" 4001 || fail "A cannot dial B"
can_dial d "${FED_IP[e]}" 4001 && fail "D could open a connection to E through E's firewall"
can_dial e "${FED_IP[d]}" 4001 && fail "E could open a connection to D through D's firewall"
echo "A -> C blocked, C -> A blocked, C -> B open, A -> B open, D <-> E blocked"
wait

say "five members (C, D and E listed without an address: they dial out only) and a non-member X"
fed_init a "Netns Origin A"
fed_init b "Netns Relay B"
FED_UNLISTED[c]=1
fed_init c "Netns Hospital C"
FED_UNLISTED[d]=1
fed_init d "Netns Office D"
FED_UNLISTED[e]=1
fed_init e "Netns Office E"
fed_init x "Netns Outsider X"
fed_set b serve true
for n in c d e; do fed_set "$n" reachability '"outbound"'; done
fed_sign_config netns-federation a b c d e
for n in b c; do
  "$BIN" panel add --config "$FED_DIR/$n/node.toml" --id "sim-$n" --name "Simulated panel at $n (chr20)" --build hg19 \
    --population AFR --vcf tests/data/panel.vcf.gz --map tests/data/map.txt >/dev/null
done
peer_of() { "$BIN" federation whoami --config "$FED_DIR/$1/node.toml" | fed_json "['peer_id']"; }
PEER_A=$(peer_of a) PEER_B=$(peer_of b) PEER_C=$(peer_of c) PEER_E=$(peer_of e) PEER_X=$(peer_of x)

# X's own "federation": its admin key, listing X, the real B (by its address) and C.
"$BIN" federation keygen --unencrypted --out "$FED_DIR/rogue-admin.key" > "$FED_DIR/rogue-admin.pub"
"$BIN" federation new --id netns-federation --threshold 1 --admin "$(cat "$FED_DIR/rogue-admin.pub")" \
  --advert-interval-secs 10 --out "$FED_DIR/rogue.json" >/dev/null
"$BIN" federation add-member "$FED_DIR/rogue.json" --institution "Netns Outsider X" --peer-id "$PEER_X" \
  --address "/ip4/${FED_IP[x]}/tcp/4001" >/dev/null
"$BIN" federation add-member "$FED_DIR/rogue.json" --institution "Netns Relay B" --peer-id "$PEER_B" \
  --address "/ip4/$IP_B/tcp/4001" >/dev/null
"$BIN" federation add-member "$FED_DIR/rogue.json" --institution "Netns Hospital C" --peer-id "$PEER_C" >/dev/null
"$BIN" federation sign "$FED_DIR/rogue.json" --key "$FED_DIR/rogue-admin.key" >/dev/null
"$BIN" federation apply --config "$FED_DIR/x/node.toml" "$FED_DIR/rogue.json" >/dev/null

say "starting the six nodes, each in its namespace"
for n in "${NODES[@]}"; do fed_start "$n"; done
X_STARTED=$(date +%s)
PASSWORD=$(cat "$FED_DIR/admin-password")
declare -A TOKEN
for n in "${NODES[@]}"; do TOKEN[$n]=$(fed_login "$n" admin "$PASSWORD"); done
api_get() { fed_curl "$1" -H "Authorization: Bearer ${TOKEN[$1]}" "$(fed_api "$1")/api/v1/$2"; }

say "every catalog complete: sim-b at B and sim-c at C, at A, B and C"
for n in a b c; do fed_wait_catalog "$n" 2 || fail "$n's catalog is incomplete"; done

# member_route NAME PEER: "connection reached relay-institution" as NAME's federation view shows PEER.
member_route() {
  api_get "$1" federation | python3 -c 'import json, sys
m = next(m for m in json.load(sys.stdin)["members"] if m["peer_id"] == sys.argv[1])
print(m["connection"], m["reached"], (m["relayed_via"] or {}).get("institution"))' "$2"
}
route_a_c=$(member_route a "$PEER_C")
[ "$route_a_c" = "connected relayed Netns Relay B" ] || fail "A's view of C: '$route_a_c', expected relayed via B"
route_c_a=$(member_route c "$PEER_A")
[ "$route_c_a" = "connected relayed Netns Relay B" ] || fail "C's view of A: '$route_c_a', expected relayed via B"
route_c_b=$(member_route c "$PEER_B")
[ "$route_c_b" = "connected direct None" ] || fail "C's view of B: '$route_c_b', expected direct"
echo "A sees C: $route_a_c; C sees A: $route_c_a; C sees B: $route_c_b"

say "D and E meet through the relay, then a hole punch connects them directly"
route_d_e=""
for _ in $(seq 1 120); do
  route_d_e=$(member_route d "$PEER_E")
  [ "$route_d_e" = "connected direct None" ] && break
  sleep 0.5
done
[ "$route_d_e" = "connected direct None" ] || fail "D's view of E: '$route_d_e', expected direct after a hole punch"
grep -q "hole punch succeeded" "$FED_DIR/d.log" "$FED_DIR/e.log" || fail "no hole punch in D's or E's log"
grep -q "relay: circuit opened.*dst=$PEER_E\|relay: circuit opened src=$PEER_E" "$FED_DIR/b.log" ||
  fail "D and E never met through B"
echo "D sees E: $route_d_e (after meeting through the relay)"

# A researcher at NAME, logged in from the CLI inside NAME's namespace (profile in $FED_DIR/cli-NAME).
researcher() {
  local n=$1 generated
  generated=$(fed_curl "$n" -H "Authorization: Bearer ${TOKEN[$n]}" -H 'content-type: application/json' \
    -d '{"username":"rosalind","role":"researcher"}' "$(fed_api "$n")/api/v1/users" | fed_json "['generated_password']")
  fed_first_login "$n" rosalind "$generated" "a netns passphrase of hers" >/dev/null
  local fingerprint
  fingerprint=$(python3 -c 'import hashlib, ssl, sys
der = ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())
print(":".join("%02X" % b for b in hashlib.sha256(der).digest()))' "$FED_DIR/$n/tls/api.crt")
  printf '%s\n' "a netns passphrase of hers" | XDG_CONFIG_HOME="$FED_DIR/cli-$n" fed_in "$n" "$BIN" login \
    --node "$(fed_api "$n")" --user rosalind --fingerprint "$fingerprint" --password-file - >/dev/null
}
submit() {
  local n=$1 panel=$2 out=$3
  XDG_CONFIG_HOME="$FED_DIR/cli-$n" fed_in "$n" "$BIN" job submit --panel "$panel" --build hg19 --engine beagle \
    --name "netns $n on $panel" --wait --download "$out" tests/data/targets.vcf.gz > "$out.txt" 2>&1 ||
    { cat "$out.txt" >&2; fail "the job at $n on $panel failed"; }
  ls "$out"/*.dose.vcf.gz >/dev/null 2>&1 || fail "no imputed results from the job at $n on $panel"
}
researcher a
researcher c

say "a job submitted at C runs on B's panel (C dials B directly) and returns"
submit c sim-b "$FED_DIR/results-c"
echo "results at C: $(ls "$FED_DIR/results-c" | tr '\n' ' ')"

say "a job submitted at A runs on C's panel, through the relay, while the relay's link is captured"
ip netns exec "${FED_NETNS[b]}" tcpdump -i eth0 -s 0 -U --immediate-mode -w "$FED_DIR/relay.pcap" tcp 2>"$FED_DIR/tcpdump.err" &
TCPDUMP_PID=$!
for _ in $(seq 1 50); do grep -q "listening on" "$FED_DIR/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
submit a sim-c "$FED_DIR/results-a"
echo "results at A: $(ls "$FED_DIR/results-a" | tr '\n' ' ')"
# The control: the same input, sent in the clear from A to B over the same link, on port 9000.
fed_in b python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((sys.argv[1], 9000)); s.listen()
c, _ = s.accept()
while c.recv(65536): pass' "$IP_B" &
CONTROL_PID=$!
sleep 0.5
fed_in a python3 -c 'import socket, sys
s = socket.create_connection((sys.argv[1], 9000)); s.sendall(open(sys.argv[2], "rb").read()); s.close()' \
  "$IP_B" tests/data/targets.vcf.gz
wait "$CONTROL_PID"
# tcpdump drops what its ring buffer still holds when stopped: give it time to write the last
# packets first (they are delivered at once in immediate mode).
sleep 1
kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=""

say "what the relay carried: the job's bytes crossed it, never in the clear"
python3 - "$FED_DIR/relay.pcap" "$IP_A" "$IP_C" tests/data/targets.vcf.gz "$FED_DIR"/results-a/*.dose.vcf.gz <<'EOF'
import socket, struct, sys
from collections import defaultdict

pcap, ip_a, ip_c, *files = sys.argv[1:]
data = open(pcap, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
linktype = struct.unpack(endian + "I", data[20:24])[0]
assert linktype == 1, f"expected an Ethernet capture, got link type {linktype}"
streams = defaultdict(bytearray)  # (src, sport, dst, dport) -> payload in capture order
seen = set()
off = 24
while off + 16 <= len(data):
    _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
    frame = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ihl = (frame[14] & 0x0F) * 4
    ip = frame[14:]
    if ip[9] != 6:
        continue
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    tcp = ip[ihl:]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    payload = tcp[(tcp[12] >> 4) * 4:struct.unpack("!H", ip[2:4])[0] - ihl]
    if payload and (src, sport, dst, dport, seq) not in seen:  # a retransmission counts once
        seen.add((src, sport, dst, dport, seq))
        streams[(src, sport, dst, dport)] += payload

def relay_bytes(peer):
    return sum(len(p) for (s, sp, d, dp), p in streams.items() if peer in (s, d) and 4001 in (sp, dp))

def windows(blob, n=200, width=24):
    step = max(1, (len(blob) - width) // n)
    return [bytes(blob[i:i + width]) for i in range(0, len(blob) - width, step)][:n]

relayed = b"".join(p for (s, sp, d, dp), p in streams.items() if 4001 in (sp, dp))
control = b"".join(p for (s, sp, d, dp), p in streams.items() if dp == 9000)
total = sum(len(open(f, "rb").read()) for f in files)
print(f"relay link: {relay_bytes(ip_a)} bytes with A, {relay_bytes(ip_c)} with C; "
      f"the input and results are {total} bytes")
assert relay_bytes(ip_a) > total and relay_bytes(ip_c) > total, "the job's files did not cross the relay"
for f in files:
    blob = open(f, "rb").read()
    ws = windows(blob)
    found = sum(1 for w in ws if w in relayed)
    print(f"{f.split('/')[-1]}: {found} of {len(ws)} windows in the relayed traffic")
    assert found == 0, f"bytes of {f} crossed the relay in the clear"
ws = windows(open(files[0], "rb").read())
found = sum(1 for w in ws if w in control)
print(f"control, the input sent in the clear: {found} of {len(ws)} windows found")
assert found == len(ws), "the search does not find a file sent in the clear"
EOF

say "the relay served the circuit (B's log), and C was reached through it"
grep -q "relay: circuit opened" "$FED_DIR/b.log" || fail "B's log shows no relayed circuit"
grep -q "relay: reservation accepted.*$PEER_C" "$FED_DIR/b.log" || fail "B's log shows no reservation for C"

say "the non-member X is refused by the relay and never reaches C"
for _ in $(seq 1 60); do
  grep -q "refused a connection from a non-member.*$PEER_X" "$FED_DIR/b.log" && break
  sleep 0.5
done
grep -q "refused a connection from a non-member.*$PEER_X" "$FED_DIR/b.log" || fail "B did not refuse X"
# X backs off between attempts (0.5 s doubling to 30 s), not one attempt per 250 ms dial tick.
refusals=$(grep -c "refused a connection from a non-member.*$PEER_X" "$FED_DIR/b.log")
elapsed=$(( $(date +%s) - X_STARTED ))
[ "$refusals" -le $(( elapsed / 8 + 8 )) ] || fail "B refused X $refusals times in $elapsed s: X redials without backing off"
x_view=$(api_get x federation | python3 -c 'import json, sys
print(" ".join(sorted(m["connection"] for m in json.load(sys.stdin)["members"] if m["connection"] != "self")))')
[ "$x_view" = "disconnected disconnected" ] || fail "X's view of B and C: '$x_view', expected both disconnected"
grep -q "$PEER_X" "$FED_DIR/c.log" && fail "C's log names X: X got through to C"
echo "B refused X $refusals times in $elapsed s; X is connected to nobody; C never heard of X"

say "every audit chain verifies"
for n in a b c d e; do "$BIN" audit verify --config "$FED_DIR/$n/node.toml" >/dev/null || fail "audit of $n"; done
echo "PASS tests/netns/relay.sh"
