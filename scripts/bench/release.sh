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
