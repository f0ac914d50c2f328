#!/usr/bin/env bash
# Builds the Debian package: target/debian/fedimpute_<version>_amd64.deb, with the binary,
# the hardened systemd unit (configs/deb/fedimpute.service), the maintainer scripts that make
# the `fedimpute` user and /var/lib/fedimpute, the example config, the docs and man pages
# generated from the CLI's own definitions. Installs cargo-deb (from crates.io) if missing.
#
#   scripts/package-deb.sh             # optimised build (what to ship)
#   FEDIMPUTE_DEB_PROFILE=dev scripts/package-deb.sh
#                                      # the test build CI already has: checks the packaging
#                                      # itself without a release build's minutes
#
# Prints the package's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

CARGO_DEB_VERSION=3.8.0
profile="${FEDIMPUTE_DEB_PROFILE:-release}"
case "$profile" in
  release) bin_dir=target/release ;;
  dev) bin_dir=target/debug ;;
  *) echo "FEDIMPUTE_DEB_PROFILE is release or dev" >&2; exit 2 ;;
esac

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "[package-deb] installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --locked --no-default-features --version "$CARGO_DEB_VERSION" >&2
fi
# dpkg-shlibdeps (dpkg-dev) works out the libc the binary needs for Depends.
command -v dpkg-shlibdeps >/dev/null || { echo "[package-deb] dpkg-shlibdeps missing: apt-get install -y dpkg-dev" >&2; exit 1; }

echo "[package-deb] building fedimpute ($profile)" >&2
cargo build --locked --profile "$profile" -p fedimpute-node --bin fedimpute >&2
version="$("$bin_dir/fedimpute" --version | awk '{print $2}')"
arch="$(dpkg --print-architecture)"

rm -rf target/deb-man
"$bin_dir/fedimpute" man-pages --out-dir target/deb-man >&2

out="target/debian/fedimpute_${version}_${arch}.deb"
mkdir -p target/debian
rm -f "$out"
cargo deb -p fedimpute-node --no-build --profile "$profile" --output "$out" >&2
echo "$out"
