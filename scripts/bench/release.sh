# Sourced by the benchmarks from the repository root: installs what is missing, builds the
# release binary, and sets ROOT (the repository) and BIN (the binary).
ROOT=$PWD
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p fedimpute-node --bin fedimpute
BIN="$ROOT/target/release/fedimpute"
