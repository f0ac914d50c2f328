#!/usr/bin/env bash
# Transfer throughput and memory (issues 5, 18): a 1 GiB input pulled by the host (B) from the
# origin (A) on one file stream (libp2p TLS 1.3 + yamux, SHA-256 checked, written to disk), vs
# a plain TCP copy of the same file over loopback (Python sockets, sendfile, written to disk,
# no hashing) and a TLS 1.3 copy that hashes what it writes (Python ssl/OpenSSL, hashlib). The transfer is timed from B's metrics (first
# byte received to the last), and both nodes' RSS is sampled every 0.2 s meanwhile. Release
# build. Prints a Markdown table.
#
#   scripts/bench/transfer.sh [SIZE_MIB]     (default 1024)
#   CHUNK_BYTES=... PARALLEL_CHUNKS=... scripts/bench/transfer.sh   (the host's [transfer] chunk
#                                       settings: only used against a peer without file streams)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
FED_DIR=$(mktemp -d)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh
trap 'fed_stop_all; rm -rf "$FED_DIR"' EXIT

# A valid, sorted, one-chromosome VCF of 20 samples and about SIZE_MIB compressed: random IDs
# do not compress.
python3 - "$FED_DIR/big.vcf" "$SIZE_MIB" <<'PY'
import os, sys, base64
path, mib = sys.argv[1], int(sys.argv[2])
target = mib * 1024 * 1024 * 100 // 69   # this text compresses to about 70%
with open(path, "w") as f:
    f.write("##fileformat=VCFv4.2\n##contig=<ID=20>\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n")
    f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{i}" for i in range(20)) + "\n")
    genotypes = "\t0|1" * 20
    written, pos = 0, 0
    while written < target:
        pos += 1
        line = "20\t%d\t%s\tA\tG\t.\tPASS\t.\tGT%s\n" % (pos, base64.b64encode(os.urandom(768)).decode(), genotypes)
        f.write(line)
        written += len(line)
PY
bgzip -@2 -f "$FED_DIR/big.vcf"
BIG="$FED_DIR/big.vcf.gz"
BYTES=$(stat -c %s "$BIG")

fed_origin_and_host Bench bench sim
[ -z "${CHUNK_BYTES:-}" ] || fed_set b chunk_bytes "$CHUNK_BYTES"
[ -z "${PARALLEL_CHUNKS:-}" ] || fed_set b parallel_chunks "$PARALLEL_CHUNKS"
RUST_LOG=warn fed_start a
RUST_LOG=warn fed_start b
fed_wait_catalog a 1
TOKEN=$(fed_login a admin "$(cat "$FED_DIR/admin-password")")
JOB=$("$BIN" job submit --node "$(fed_api a)" --token "$TOKEN" --ca-cert "$FED_DIR/a/tls/api.crt" \
  --panel sim --build hg19 --mode qc_only "$BIG" | head -n 1)

python3 - "$(fed_api b)/metrics" "$FED_DIR/b/tls/api.crt" "$BYTES" "${FED_PID[a]}" "${FED_PID[b]}" > "$FED_DIR/p2p.txt" <<'PY'
import ssl, sys, time, urllib.request
url, ca, size, pids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
key = 'fedimpute_transfer_bytes_total{direction="received",kind="input"}'
def received():
    for line in urllib.request.urlopen(url, context=ctx).read().decode().splitlines():
        if line.startswith(key):
            return int(float(line.split()[-1]))
    return 0
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
deadline = time.time() + 900
first = received()
while first == 0 and time.time() < deadline:
    time.sleep(0.05)
    first = received()
start = time.time()
samples = {p: [] for p in pids}
while time.time() < deadline:
    for p in pids:
        samples[p].append(rss(p))
    if received() >= size:
        break
    time.sleep(0.2)
secs = time.time() - start
# Timed from the first byte seen: scale to the whole file.
print(secs * size / max(size - first, 1), *[f"{min(s):.0f}-{max(s):.0f}" for s in samples.values()])
PY
read -r P2P_SECS RSS_A RSS_B < "$FED_DIR/p2p.txt"
fed_curl a -X POST -H "Authorization: Bearer $TOKEN" "$(fed_api a)/api/v1/jobs/$JOB/cancel" >/dev/null || true

TCP_SECS=$(python3 - "$BIG" "$FED_DIR/copy.bin" <<'PY'
import socket, sys, threading, time
src, dst = sys.argv[1], sys.argv[2]
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
port = server.getsockname()[1]
def receive():
    conn, _ = server.accept()
    with open(dst, "wb") as out:
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            out.write(data)
t = threading.Thread(target=receive); t.start()
start = time.time()
with socket.create_connection(("127.0.0.1", port)) as s, open(src, "rb") as f:
    s.sendfile(f)
t.join()
print(time.time() - start)
PY
)
# The same copy with what a transfer between nodes must also do: TLS 1.3 both ways (OpenSSL,
# through Python's ssl, with the node's API certificate) and SHA-256 of what arrives.
TLS_SECS=$(python3 - "$BIG" "$FED_DIR/copy-tls.bin" "$FED_DIR/a/tls/api.crt" "$FED_DIR/a/tls/api.key" <<'PY'
import hashlib, socket, ssl, sys, threading, time
src, dst, cert, key = sys.argv[1:5]
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); server_ctx.load_cert_chain(cert, key)
server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); client_ctx.load_verify_locations(cert)
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
port = server.getsockname()[1]
def receive():
    conn, _ = server.accept()
    conn = server_ctx.wrap_socket(conn, server_side=True)
    digest = hashlib.sha256()
    with open(dst, "wb") as out:
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            digest.update(data)
            out.write(data)
t = threading.Thread(target=receive); t.start()
start = time.time()
with socket.create_connection(("127.0.0.1", port)) as raw, open(src, "rb") as f:
    with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
        while block := f.read(1 << 20):
            s.sendall(block)
t.join()
print(time.time() - start)
PY
)
awk -v b="$BYTES" -v p="$P2P_SECS" -v t="$TCP_SECS" -v l="$TLS_SECS" -v ra="$RSS_A" -v rb="$RSS_B" 'BEGIN {
  mib = b / 1048576
  printf "| file | node-to-node s | MiB/s | plain TCP s | MiB/s | ratio | TLS + SHA-256 s | MiB/s | ratio | RSS A MiB | RSS B MiB |\n"
  printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
  printf "| %.0f MiB | %.2f | %.0f | %.2f | %.0f | %.2f | %.2f | %.0f | %.2f | %s | %s |\n", mib, p, mib / p, t, mib / t, t / p, l, mib / l, l / p, ra, rb }'
echo "machine: $(nproc) cores"
