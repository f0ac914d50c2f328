# Shell helpers to run a local federation of fedimpute nodes on 127.0.0.1, for the demo and the
# benchmarks. Source it after setting BIN (the fedimpute binary) and FED_DIR (a working folder).
#
#   fed_init NAME INSTITUTION            init node NAME under $FED_DIR/NAME (admin password in $FED_DIR/admin-password)
#   fed_sign_config ID NAME...           admin key + signed config listing the nodes, applied on each
#   fed_start NAME                       run the node in the background (log: $FED_DIR/NAME.log; pid: ${FED_PID[NAME]}), wait for its API
#   fed_stop_all                         SIGTERM every node started here, and wait
#   fed_api NAME                         https://127.0.0.1:PORT of a started node
#   fed_curl NAME ARGS...                curl trusting that node's certificate
#   fed_login NAME USER PASSWORD         prints an access token
#   fed_set NAME KEY VALUE               sets KEY = VALUE in the node's node.toml (KEY must be there)
#   fed_origin_and_host LABEL ID PANEL   nodes a ("LABEL Origin A", no panel) and b ("LABEL Host B",
#                                        the committed test panel as PANEL) in federation ID
#   fed_in NAME CMD...                   runs CMD where node NAME runs (inside its network namespace)
#
# Nodes in network namespaces (tests/netns/): before fed_init, set FED_NETNS[NAME] (the namespace)
# and FED_IP[NAME] (its address there; the node listens on port 4001). FED_UNLISTED[NAME]=1 lists
# the node in the federation config with no address (it dials out only).

: "${BIN:?set BIN to the fedimpute binary}" "${FED_DIR:?set FED_DIR to a working folder}"
FED_PIDS=()
declare -A FED_P2P FED_INSTITUTION FED_PID FED_NETNS FED_IP FED_UNLISTED

fed_json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
fed_in() {
  local name=$1; shift
  if [ -n "${FED_NETNS[$name]:-}" ]; then ip netns exec "${FED_NETNS[$name]}" "$@"; else "$@"; fi
}
fed_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fed_init() {
  local name=$1 institution=$2
  mkdir -p "$FED_DIR"
  [ -f "$FED_DIR/admin-password" ] ||
    (umask 077; python3 -c 'import secrets; print("fed-" + secrets.token_urlsafe(18))' > "$FED_DIR/admin-password")
  if [ -n "${FED_IP[$name]:-}" ]; then FED_P2P[$name]=4001; else FED_P2P[$name]=$(fed_free_port); fi
  FED_INSTITUTION[$name]=$institution
  "$BIN" init --data-dir "$FED_DIR/$name" --institution "$institution" --name "$name" --api-listen 127.0.0.1:0 \
    --p2p-listen "$(fed_p2p_addr "$name")" --admin-password-file "$FED_DIR/admin-password" >/dev/null
}

fed_p2p_addr() { echo "/ip4/${FED_IP[$1]:-127.0.0.1}/tcp/${FED_P2P[$1]}"; }

fed_sign_config() {
  local id=$1; shift
  local config="$FED_DIR/federation.json" admin
  # A throw-away local federation: its admin key need not be sealed.
  admin=$("$BIN" federation keygen --unencrypted --out "$FED_DIR/federation-admin.key")
  "$BIN" federation new --id "$id" --threshold 1 --admin "$admin" --advert-interval-secs 10 --out "$config" >/dev/null
  local address
  for name in "$@"; do
    address=(--address "$(fed_p2p_addr "$name")")
    [ -n "${FED_UNLISTED[$name]:-}" ] && address=()
    "$BIN" federation add-member "$config" --institution "${FED_INSTITUTION[$name]}" \
      --peer-id "$("$BIN" federation whoami --config "$FED_DIR/$name/node.toml" | fed_json "['peer_id']")" \
      "${address[@]}" >/dev/null
  done
  "$BIN" federation sign "$config" --key "$FED_DIR/federation-admin.key" >/dev/null
  for name in "$@"; do "$BIN" federation apply --config "$FED_DIR/$name/node.toml" "$config" >/dev/null; done
}

fed_set() {
  local file="$FED_DIR/$1/node.toml"
  grep -q "^$2 = " "$file" || { echo "$2 is not in $file" >&2; return 1; }
  sed -i "s|^$2 = .*|$2 = $3|" "$file"
}

fed_start() {
  local name=$1
  rm -f "$FED_DIR/$name/api.addr"
  # Not through fed_in: a function in the background is a subshell, whose pid is not the node's.
  local netns=()
  [ -n "${FED_NETNS[$name]:-}" ] && netns=(ip netns exec "${FED_NETNS[$name]}")
  RUST_LOG=${RUST_LOG:-info} "${netns[@]}" "$BIN" run --config "$FED_DIR/$name/node.toml" >"$FED_DIR/$name.log" 2>&1 &
  FED_PIDS+=($!)
  FED_PID[$name]=$!
  for _ in $(seq 1 300); do [ -s "$FED_DIR/$name/api.addr" ] && return 0; sleep 0.1; done
  echo "node $name did not start; see $FED_DIR/$name.log" >&2
  return 1
}

fed_stop_all() {
  local p
  for p in "${FED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${FED_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

fed_api() { echo "https://$(cat "$FED_DIR/$1/api.addr")"; }
fed_curl() { local name=$1; shift; fed_in "$name" curl -sS --fail-with-body --cacert "$FED_DIR/$name/tls/api.crt" "$@"; }
fed_login() {
  fed_curl "$1" -H 'content-type: application/json' -d "{\"username\":\"$2\",\"password\":\"$3\"}" \
    "$(fed_api "$1")/api/v1/auth/login" | fed_json "['access_token']"
}

# fed_first_login NAME USER ONE_TIME_PASSWORD NEW_PASSWORD: a generated password must be
# changed before anything else; prints the access token of the session the change opens.
fed_first_login() {
  local token
  token=$(fed_login "$1" "$2" "$3")
  fed_curl "$1" -X PUT -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"current_password\":\"$3\",\"new_password\":\"$4\"}" \
    "$(fed_api "$1")/api/v1/me/password" | fed_json "['access_token']"
}

# Waits until node NAME's catalog lists COUNT reachable (panel, host) pairs.
fed_wait_catalog() {
  local name=$1 count=$2 token n
  token=$(fed_login "$name" admin "$(cat "$FED_DIR/admin-password")")
  for _ in $(seq 1 240); do
    n=$(fed_curl "$name" -H "Authorization: Bearer $token" "$(fed_api "$name")/api/v1/catalog/panels" |
      python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) for h in p["hosts"] if h["reachable"]))')
    [ "$n" = "$count" ] && return 0
    sleep 0.5
  done
  echo "node $name's catalog did not reach $count hosts" >&2
  return 1
}

fed_origin_and_host() {
  local label=$1 id=$2 panel=$3
  fed_init a "$label Origin A"
  fed_init b "$label Host B"
  fed_sign_config "$id" a b
  "$BIN" panel add --config "$FED_DIR/b/node.toml" --id "$panel" --name "Simulated panel (chr20)" --build hg19 \
    --population AFR --vcf tests/data/panel.vcf.gz --map tests/data/map.txt >/dev/null
}
