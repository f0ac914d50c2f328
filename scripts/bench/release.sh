# Sourced by the benchmarks from the repository root: installs what is missing, builds the
# release binary, and sets ROOT (the repository) and BIN (the binary).
ROOT=$PWD
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p fedimpute-node --bin fedimpute
BIN="$ROOT/target/release/fedimpute"

# bench_api_token API CA: an API token of the benchmark node's admin (password
# "bench passphrase 123", as the benchmarks create it), for the node at API with its certificate CA.
bench_api_token() {
  local login access
  login=$(curl -s --cacert "$2" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"bench passphrase 123"}' "$1/api/v1/auth/login")
  access=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_token"])' "$login")
  curl -s --cacert "$2" -H "Authorization: Bearer $access" -H 'content-type: application/json' \
    -d '{"name":"bench","expires_in_days":1,"password":"bench passphrase 123"}' "$1/api/v1/me/tokens" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# bench_start_node CONFIG DIR LOG: runs the node of data directory DIR (config CONFIG) in the
# background, logging to LOG, and waits for its API; sets NODE_PID, API, CA and TOKEN (an API
# token of its admin).
bench_start_node() {
  RUST_LOG=warn "$BIN" run --config "$1" 2>"$3" &
  NODE_PID=$!
  for _ in $(seq 1 300); do [ -s "$2/api.addr" ] && break; sleep 0.1; done
  API="https://$(cat "$2/api.addr")"
  CA="$2/tls/api.crt"
  TOKEN=$(bench_api_token "$API" "$CA")
}
