#!/usr/bin/env python3
"""Federation convergence benchmark: N release-build nodes on 127.0.0.1.

Measures, for each N:
  - time from the last node's start until every node's catalog holds a fresh advert of every
    member, from the node's /metrics gauges (no login), polled every 0.2 s (the resolution of
    this figure);
  - the connections each node holds once converged (mean, max) and in all, against the
    N(N-1)/2 of a full mesh;
  - advert propagation: for every (advert, receiver) pair, receive time minus issue time, once
    every catalog entry comes from gossip after convergence (p50, p99, max);
  - resident memory (VmRSS) of every idle node.

Traffic stays on 127.0.0.1; every wait is bounded; all nodes are stopped at the end.
Usage: scripts/bench/convergence.py BIN N [N ...]   (see convergence.sh)
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

PASSWORD = "bench passphrase 123"


def advert_interval(n):
    """Seconds between a member's adverts: 2 (a quick propagation sample) up to 50 nodes, then
    n/10, so that the N^2/interval advert validations of N nodes sharing these 2 cores stay
    within what they can do (a real federation uses the default 30 s, one node per machine)."""
    return int(os.environ.get("BENCH_ADVERT_INTERVAL", max(2, n // 10)))

DEADLINE = int(os.environ.get("BENCH_DEADLINE", "120"))  # seconds, for any wait


def free_port(i):
    """A free port below the kernel's ephemeral range: a port the kernel picked at random would
    be free now but could be taken as the source port of one of the running nodes' connections
    before the node that owns it starts."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    for port in range(low - 2000 + 7 * i, low - 1, 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below the ephemeral range")


def run(bin_path, *args):
    out = subprocess.run([bin_path, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"fedimpute {args}: {out.stderr}")
    return out.stdout


def ms(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


class Node:
    def __init__(self, bin_path, root, i):
        self.bin, self.dir, self.port = bin_path, os.path.join(root, f"n{i}"), free_port(i)
        run(bin_path, "init", "--data-dir", self.dir, "--institution", f"Bench {i}", "--api-listen", "127.0.0.1:0",
            "--p2p-listen", f"/ip4/127.0.0.1/tcp/{self.port}", "--admin-password-file", os.path.join(root, "pw"))
        who = json.loads(run(bin_path, "federation", "whoami", "--config", self.config))
        self.peer_id, self.proc, self.token = who["peer_id"], None, None

    @property
    def config(self):
        return os.path.join(self.dir, "node.toml")

    def start(self):
        log = open(os.path.join(self.dir, "run.log"), "w")
        self.proc = subprocess.Popen([self.bin, "run", "--config", self.config], stdout=log, stderr=log,
                                     env={**os.environ, "RUST_LOG": os.environ.get("BENCH_LOG", "warn")})

    def api_base(self):
        if not hasattr(self, "base"):
            addr_file = os.path.join(self.dir, "api.addr")
            deadline = time.time() + DEADLINE
            while not os.path.exists(addr_file):
                if time.time() > deadline:
                    raise RuntimeError(f"{self.dir} did not start")
                time.sleep(0.05)
            self.base = "https://" + open(addr_file).read().strip()
            self.ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "tls", "api.crt"))

    def api(self, path, body=None):
        self.api_base()
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = "Bearer " + self.token
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.load(r)

    def login(self):
        self.token = self.api("/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["access_token"]

    def view(self):
        return self.api("/api/v1/federation")

    def member_gauges(self):
        """Membership gauges from /metrics, which needs no login, over a kept-alive connection
        (a new TLS handshake per poll would load the nodes being measured)."""
        self.api_base()
        for attempt in (1, 2):
            try:
                if getattr(self, "conn", None) is None:
                    host, port = self.base[len("https://"):].rsplit(":", 1)
                    self.conn = http.client.HTTPSConnection(host, int(port), context=self.ctx, timeout=10)
                self.conn.request("GET", "/metrics")
                text = self.conn.getresponse().read().decode()
                break
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise
        gauges = {}
        for line in text.splitlines():
            if line.startswith("fedimpute_federation_members{"):
                state = line.split('state="')[1].split('"')[0]
                gauges[state] = int(line.split()[-1])
        return gauges

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    def cpu_s(self):
        """User + system CPU time the node has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def catalog_complete(gauges, n):
    """The node's catalog holds a fresh advert of every member (itself included)."""
    return gauges.get("listed") == n and gauges.get("reachable") == n


def bench(bin_path, n):
    root = tempfile.mkdtemp(prefix=f"fedimpute-bench-{n}-")
    nodes = []
    try:
        with open(os.path.join(root, "pw"), "w") as f:
            f.write(PASSWORD + "\n")
        admin_key = os.path.join(root, "admin.key")
        pub = run(bin_path, "federation", "keygen", "--unencrypted", "--out", admin_key).strip()
        fed = os.path.join(root, "fed.json")
        run(bin_path, "federation", "new", "--id", "bench", "--admin", pub, "--threshold", "1",
            "--advert-interval-secs", str(advert_interval(n)), "--out", fed)
        with ThreadPoolExecutor(8) as pool:
            nodes = list(pool.map(lambda i: Node(bin_path, root, i), range(n)))
        for node in nodes:
            run(bin_path, "federation", "add-member", fed, "--peer-id", node.peer_id, "--institution",
                node.peer_id[-6:], "--address", f"/ip4/127.0.0.1/tcp/{node.port}")
        run(bin_path, "federation", "sign", fed, "--key", admin_key)
        for node in nodes:
            run(bin_path, "federation", "apply", "--config", node.config, fed)

        for node in nodes:
            node.start()
        last_start = time.time()

        done_at = {}
        deadline = time.time() + DEADLINE
        with ThreadPoolExecutor(16) as pool:
            while len(done_at) < n and time.time() < deadline:
                pending = [x for x in nodes if x.peer_id not in done_at]
                for node, gauges in zip(pending, pool.map(lambda x: x.member_gauges(), pending)):
                    if catalog_complete(gauges, n):
                        done_at.setdefault(node.peer_id, time.time())
                # The poller shares the cores with the nodes it measures: poll gently.
                time.sleep(0.2)
        if len(done_at) < n:
            for node in (x for x in nodes if x.peer_id not in done_at):
                print(f"incomplete: {node.dir}: {node.member_gauges()}", file=sys.stderr)
            raise RuntimeError(f"only {len(done_at)} of {n} catalogs complete after {DEADLINE} s")
        converged = max(done_at.values()) - last_start
        cpu_at_convergence = sum(x.cpu_s() for x in nodes)
        poller = os.times()
        print(f"{n} nodes: the poller used {poller.user + poller.system:.1f} CPU s", file=sys.stderr)
        with ThreadPoolExecutor(16) as pool:
            connections = list(pool.map(lambda x: x.member_gauges().get("connected", 0), nodes))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda x: x.login(), nodes))

        # Let every member publish at least twice more by gossip, then sample each catalog once.
        sample_after = time.time() * 1000
        time.sleep(2 * advert_interval(n) + 1)
        delays = []
        with ThreadPoolExecutor(16) as pool:
            for view in pool.map(lambda x: x.view(), nodes):
                for m in view["members"]:
                    if m["connection"] == "self" or not m.get("advert_issued_at"):
                        continue
                    issued, received = ms(m["advert_issued_at"]), ms(m["advert_received_at"])
                    if issued >= sample_after:
                        delays.append(received - issued)
        rss = [x.rss_kib() / 1024 for x in nodes]
        # What the idle federation costs: every node's CPU over 5 s with nothing to do but gossip.
        before = sum(x.cpu_s() for x in nodes)
        time.sleep(5)
        idle_cores = (sum(x.cpu_s() for x in nodes) - before) / 5
        delays.sort()
        p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
        return {
            "n": n,
            "interval_s": advert_interval(n),
            "converged_s": converged,
            "cpu_s": cpu_at_convergence,
            "conn_mean": statistics.mean(connections),
            "conn_max": max(connections),
            "conn_total": sum(connections) // 2,
            "full_mesh": n * (n - 1) // 2,
            "samples": len(delays),
            "p50_ms": p(0.50),
            "p99_ms": p(0.99),
            "max_ms": delays[-1],
            "rss_mean_mib": statistics.mean(rss),
            "rss_max_mib": max(rss),
            "idle_cores": idle_cores,
        }
    finally:
        for node in nodes:
            node.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}", file=sys.stderr)


def main():
    bin_path, sizes = sys.argv[1], [int(x) for x in sys.argv[2:]] or [10, 25, 50]
    print("| nodes | advert interval | every catalog complete | CPU s of all nodes by then | connections per node (mean / max) | connections in all (full mesh) | advert p50 | advert p99 | advert max | samples | RSS mean | RSS max | idle CPU of all nodes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        r = bench(bin_path, n)
        print(f"| {r['n']} | {r['interval_s']} s | {r['converged_s']:.2f} s | {r['cpu_s']:.1f} | {r['conn_mean']:.1f} / {r['conn_max']} | {r['conn_total']} ({r['full_mesh']}) | "
              f"{r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
              f"{r['max_ms']:.0f} ms | {r['samples']} | {r['rss_mean_mib']:.1f} MiB | {r['rss_max_mib']:.1f} MiB | {r['idle_cores']:.2f} cores |",
              flush=True)


if __name__ == "__main__":
    main()
