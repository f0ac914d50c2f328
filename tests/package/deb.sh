#!/usr/bin/env bash
# The Debian package on this machine: builds it (scripts/package-deb.sh), installs it with
# dpkg -i, checks the service user, the data folder's mode, the unit (systemd-analyze verify
# and its exposure score), the man pages, runs the node as the service user would, then
# removes and purges the package and checks what stays. Needs root (dpkg); refuses to run on
# a machine that already has a fedimpute package or /var/lib/fedimpute, and leaves none.
#
#   tests/package/deb.sh            # FEDIMPUTE_DEB_PROFILE=release to package an optimised build
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i); run it as root or in a throwaway machine"
if dpkg -s fedimpute >/dev/null 2>&1 || [ -e /var/lib/fedimpute ]; then
  fail "this machine already has a fedimpute package or /var/lib/fedimpute; not touching it"
fi
missing=()
for tool in systemd-analyze:systemd man:man-db adduser:adduser dpkg-shlibdeps:dpkg-dev setpriv:util-linux curl:curl; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deb test] installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

user_existed=no
getent passwd fedimpute >/dev/null && user_existed=yes
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
  dpkg --purge fedimpute >/dev/null 2>&1 || true
  rm -rf /var/lib/fedimpute
  if [ "$user_existed" = no ] && getent passwd fedimpute >/dev/null; then
    deluser --system --quiet fedimpute >/dev/null 2>&1 || userdel fedimpute || true
  fi
}
trap cleanup EXIT

deb="$(FEDIMPUTE_DEB_PROFILE="${FEDIMPUTE_DEB_PROFILE:-dev}" scripts/package-deb.sh | tail -1)"
version="$(dpkg-deb -f "$deb" Version)"
[[ "$(basename "$deb")" == "fedimpute_${version}_$(dpkg --print-architecture).deb" ]] || fail "package named $deb"
for dep in beagle minimac4 bcftools tabix adduser default-jre-headless; do
  dpkg-deb -f "$deb" Depends | grep -qw "$dep" || fail "the package does not depend on $dep"
done

echo "[deb test] dpkg -i $deb"
dpkg -i "$deb" >/dev/null

echo "[deb test] the service user and its folder"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd fedimpute) || fail "no fedimpute user"
[ "$uid" -lt 1000 ] || fail "fedimpute is not a system user (uid $uid)"
[ "$home" = /var/lib/fedimpute ] || fail "fedimpute's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "fedimpute can log in ($shell)"
[ "$(stat -c '%a %U %G' /var/lib/fedimpute)" = "700 fedimpute fedimpute" ] \
  || fail "/var/lib/fedimpute is $(stat -c '%a %U %G' /var/lib/fedimpute)"

echo "[deb test] the unit"
unit=/usr/lib/systemd/system/fedimpute.service
[ -f "$unit" ] || fail "no $unit"
systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
for directive in User=fedimpute ProtectSystem=strict ReadWritePaths=/var/lib/fedimpute NoNewPrivileges=true \
    PrivateTmp=true ProtectHome=true "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK" \
    CapabilityBoundingSet= LimitNOFILE=65536 Restart=on-failure Type=notify; do
  grep -qx "$directive" "$unit" || fail "the unit lacks $directive"
done
exposure="$(systemd-analyze security --offline=true "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for fedimpute.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 3.0) }' || fail "exposure level $exposure (over 3.0)"
echo "[deb test] exposure level $exposure"

echo "[deb test] man pages and docs"
man -w fedimpute >/dev/null || fail "no man page fedimpute(1)"
MANWIDTH=200 man fedimpute-backup 2>/dev/null | grep -q -- "--without-panels" || fail "fedimpute-backup(1) lacks its options"
[ -f /usr/share/doc/fedimpute/OPERATIONS.md ] && [ -f /usr/share/doc/fedimpute/examples/node.example.toml ] \
  || fail "docs or the example config missing"

echo "[deb test] as the fedimpute user"
as_node() { runuser -u fedimpute -- "$@"; }
as_node fedimpute --version | grep -qx "fedimpute $version" || fail "fedimpute --version as fedimpute"
# A node made and run the way the unit runs it (ExecStart), its readiness through /readyz.
umask 077
printf 'Pkg-test Tr4nsit 99x\n' > /tmp/fedimpute-deb-admin-password
chown fedimpute /tmp/fedimpute-deb-admin-password
as_node fedimpute init --data-dir /var/lib/fedimpute --institution "Package Test" \
  --api-listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 \
  --admin-password-file /tmp/fedimpute-deb-admin-password >/dev/null
rm -f /tmp/fedimpute-deb-admin-password
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it
# setpriv execs (as systemd does), so the node itself gets the SIGTERM below.
setpriv --reuid=fedimpute --regid=fedimpute --init-groups --inh-caps=-all -- $exec_start 2>/tmp/fedimpute-deb-node.log &
node_pid=$!
for _ in $(seq 1 150); do
  [ -s /var/lib/fedimpute/api.addr ] && break
  kill -0 "$node_pid" 2>/dev/null || { cat /tmp/fedimpute-deb-node.log >&2; fail "the node exited"; }
  sleep 0.2
done
addr="$(cat /var/lib/fedimpute/api.addr)"
status="$(curl -sk -o /dev/null -w '%{http_code}' "https://$addr/readyz")"
[ "$status" = 200 ] || { cat /tmp/fedimpute-deb-node.log >&2; fail "/readyz answered $status"; }
[ "$(find /var/lib/fedimpute -not -user fedimpute | wc -l)" = 0 ] || fail "files in /var/lib/fedimpute not owned by fedimpute"
[ "$(find /var/lib/fedimpute -perm /077 | wc -l)" = 0 ] || fail "files in /var/lib/fedimpute others can read"
kill -TERM "$node_pid"
wait "$node_pid" || { cat /tmp/fedimpute-deb-node.log >&2; fail "the node did not stop cleanly on SIGTERM"; }
node_pid=""
rm -f /tmp/fedimpute-deb-node.log

echo "[deb test] installing over an installed package (an upgrade) keeps the node"
key_sum="$(sha256sum /var/lib/fedimpute/node.key)"
dpkg -i "$deb" >/dev/null
[ "$(sha256sum /var/lib/fedimpute/node.key)" = "$key_sum" ] || fail "the upgrade changed the node's key"
[ "$(stat -c '%a %U' /var/lib/fedimpute)" = "700 fedimpute" ] || fail "the upgrade changed the folder's mode or owner"

echo "[deb test] dpkg -r, then --purge: the program goes, the data stays"
dpkg -r fedimpute >/dev/null
[ ! -e /usr/bin/fedimpute ] && [ ! -e "$unit" ] || fail "files left after dpkg -r"
[ -f /var/lib/fedimpute/node.key ] || fail "dpkg -r removed the node's data"
dpkg --purge fedimpute >/dev/null 2>&1
[ -f /var/lib/fedimpute/node.key ] || fail "dpkg --purge removed the node's data"
dpkg -s fedimpute >/dev/null 2>&1 && fail "the package is still installed"
echo "[deb test] ok: $deb"
