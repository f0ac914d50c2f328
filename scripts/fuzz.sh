#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]: runs each cargo-fuzz target (every one in fuzz/ unless
# named) for SECONDS (default 30), from the committed seeds in fuzz/seeds/TARGET plus the corpus
# earlier runs grew in fuzz/corpus/TARGET. Stops with an error at the first crash, leaving the
# input in fuzz/artifacts/TARGET/ (turn it into a regression test). Prints the executions count
# of each target. Installs cargo-fuzz if it is missing; RUSTC_BOOTSTRAP lets it build on stable.
# FUZZ_PROFILE=dev builds unoptimised (minutes faster to build, slower to run: CI's smoke run);
# the default, release, is for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${1:-30}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
case "${FUZZ_PROFILE:-release}" in
  release) profile=--release ;;
  dev) profile=--dev ;;
  *) echo "FUZZ_PROFILE is release or dev" >&2; exit 2 ;;
esac

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

# No sanitizer: the code under test is safe Rust, where a bug shows as a panic, which libFuzzer
# reports as a crash all the same; skipping ASan halves the build and speeds every execution.
echo "== building ${#targets[@]} fuzz targets" >&2
cargo fuzz build --fuzz-dir fuzz --sanitizer none "$profile" >&2

printf '| target | seconds | executions | corpus entries |\n|---|---|---|---|\n'
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  # -rss_limit_mb: a decoder that balloons on a small input is a bug too.
  if ! cargo fuzz run --fuzz-dir fuzz --sanitizer none "$profile" "$target" \
      "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target crashed; the input is in fuzz/artifacts/$target/" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  entries=$(find "fuzz/corpus/$target" -type f | wc -l)
  printf '| %s | %s | %s | %s |\n' "$target" "$seconds" "${runs:-?}" "$entries"
  rm -f "$log"
done
