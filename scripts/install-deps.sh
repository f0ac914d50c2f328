#!/usr/bin/env bash
# Installs what fedimpute's build, tests and demo need on a Debian machine, skipping what is
# already there. Safe to run repeatedly. Run as root (or with sudo available).
#
#   scripts/install-deps.sh            # build, test, demo and benchmark dependencies
#
# Debian packages: build tools, the imputation engines (Beagle 5.4, Minimac4) with bcftools and
# tabix and a Java runtime, real genetic maps (shapeit4-example), Slurm and munge (for the Slurm
# executor's tests, on scripts/slurm/local-cluster.sh), Python's venv (for scripts/simulate.sh),
# Chromium for the browser tests, and Node.js with npm to drive it (playwright-core), iproute2,
# nftables and tcpdump (the network-namespace test of members behind firewalls); then rustfmt and
# clippy.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: install these Debian packages yourself: $*"; fi
fi

# Debian packages: build tools for C parts of crates (SQLite, aws-lc), the engines and tools
# jobs run, and what the scripts and browser tests use.
APT_PACKAGES=(ca-certificates curl procps python3 python3-venv gcc g++ make cmake pkg-config
  beagle minimac4 bcftools tabix default-jre-headless chromium shapeit4-example
  slurm-wlm munge iproute2 nftables tcpdump)
# Node.js may come from elsewhere (e.g. NodeSource, whose nodejs bundles npm); only if there is
# none, Debian's.
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Rust toolchain comes from rustup (Debian's cargo is too old for edition 2024).
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "no Rust toolchain found. Install one with rustup (https://rustup.rs), Rust >= 1.94, then re-run."
    exit 1
  fi
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    log "adding rustup component $component"
    rustup component add "$component"
  fi
done
log "dependencies present"
