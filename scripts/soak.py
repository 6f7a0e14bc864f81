#!/usr/bin/env python3
"""Soak (a measurement, not a test): one release agent, standalone in a sandbox on loopback,
driven with a fixed-rate mix of commands for an hour; its RSS, thread count and open fds are
sampled every minute, so a leak shows as a slope.

    scripts/soak.py [--minutes 60] [--rate 20] [--out target/soak]

The mix, per second at --rate requests/s (round robin): GET /v1/status, GET /v1/commands,
POST poll.get_hardware_info (wait), POST deploy.get_deploy_steps (wait), POST
clean.get_clean_steps (wait), a bad-token request (401), a malformed body (400); and once a
minute a 64 MiB raw whole-disk image (GPT, sfdisk) written by standby.prepare_image from a loopback HTTP server
(verified sha256, polled to completion) and log.collect_system_logs. Results: soak.csv (one row
a minute), soak.svg (the curve), summary printed. Stdlib only; stops only the agent and the
image server it started.
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "soak-token-0123456789abcdefghijklmnop"
IMAGE_MIB = 64


def proc_sample(pid):
    rss_kb = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb, threads, fds


class ImageHandler(http.server.BaseHTTPRequestHandler):
    data = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        view = memoryview(self.data)
        for i in range(0, len(view), 1 << 20):
            self.wfile.write(view[i : i + (1 << 20)])

    def log_message(self, *_):
        pass


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=20, help="requests per second")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "soak"))
    ap.add_argument("--agent", help="agent binary (default: build target/release/ipa-agent)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # SIGTERM/SIGINT end the run through the `finally` below, which stops the agent it started
    # (by its PID) and removes the sandbox; without this a killed soak left its agent running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    agent_bin = args.agent
    if not agent_bin:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ipa-agent"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        agent_bin = os.path.join(target, "release", "ipa-agent")

    # A deterministic 64 MiB whole-disk raw image: a GPT made by sfdisk (the agent checks the
    # written disk has partitions, as IPA does) over a filled payload, served from loopback.
    block = hashlib.sha256(b"soak").digest() * (1 << 15)  # 1 MiB
    with tempfile.NamedTemporaryFile(prefix="ipa-soak-image-") as img:
        img.write(block * IMAGE_MIB)
        img.flush()
        subprocess.run(["sfdisk", "-q", img.name], input=b"label: gpt\n,32M,L\n,,L\n", check=True)
        with open(img.name, "rb") as f:
            ImageHandler.data = f.read()
    image_sha = hashlib.sha256(ImageHandler.data).hexdigest()
    img_port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", img_port), ImageHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    work = tempfile.mkdtemp(prefix="ipa-soak-")
    port = free_port()
    log = open(os.path.join(args.out, "agent.log"), "wb")
    agent = subprocess.Popen(
        [agent_bin, "--standalone", "--sandbox", os.path.join(work, "sb"),
         f"--listen=127.0.0.1:{port}", f"--token={TOKEN}", "--kernel-cmdline", "none"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    rows = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def req(method, path, body=None):
            nonlocal conn
            for _ in range(2):
                try:
                    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
                    hdrs = {"Content-Type": "application/json"} if data is not None else {}
                    conn.request(method, path, body=data, headers=hdrs)
                    r = conn.getresponse()
                    return r.status, r.read()
                except (ConnectionError, http.client.HTTPException, OSError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            raise RuntimeError(f"{method} {path}: agent not answering")

        for _ in range(500):  # up to 10 s for the agent to listen
            try:
                if req("GET", "/v1/status")[0] == 200:
                    break
            except RuntimeError:
                pass
            time.sleep(0.02)
        else:
            raise RuntimeError("agent did not start; see agent.log")

        q = f"/v1/commands/?agent_token={TOKEN}&wait=true"
        node = {"uuid": "soak-node", "properties": {}, "instance_info": {}, "driver_info": {}}
        mix = [
            ("GET", "/v1/status", None, 200),
            ("GET", f"/v1/commands/?agent_token={TOKEN}", None, 200),
            ("POST", q, {"name": "poll.get_hardware_info", "params": {}}, 200),
            ("POST", q, {"name": "deploy.get_deploy_steps", "params": {"node": node, "ports": []}}, 200),
            ("POST", q, {"name": "clean.get_clean_steps", "params": {"node": node, "ports": []}}, 200),
            ("GET", "/v1/commands/?agent_token=wrong", None, 401),
            ("POST", q, b"{not json", 400),
        ]
        image = {"image_info": {
            "id": "soak-image", "urls": [f"http://127.0.0.1:{img_port}/disk.raw"],
            "disk_format": "raw", "stream_raw_images": True,
            "os_hash_algo": "sha256", "os_hash_value": image_sha}}

        start = time.monotonic()
        end = start + args.minutes * 60
        period = 1.0 / args.rate
        sent = errors = images = 0
        next_sample = start
        next_tick = start
        i = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                rss, thr, fds = proc_sample(agent.pid)
                rows.append((round((now - start) / 60, 2), rss, thr, fds, sent, errors, images))
                print(f"[{rows[-1][0]:6.1f} min] rss {rss / 1024:.1f} MiB, threads {thr}, fds {fds}, "
                      f"requests {sent}, unexpected {errors}, images {images}", flush=True)
                # The once-a-minute heavy part: an image write and a log bundle.
                st, body = req("POST", f"/v1/commands/?agent_token={TOKEN}",
                               {"name": "standby.prepare_image", "params": image})
                if st != 200:
                    errors += 1
                else:
                    cid = json.loads(body)["id"]
                    for _ in range(600):  # bounded: 5 minutes
                        st, body = req("GET", f"/v1/commands/{cid}?agent_token={TOKEN}")
                        status = json.loads(body).get("command_status")
                        if status != "RUNNING":
                            break
                        time.sleep(0.5)
                    if status == "SUCCEEDED":
                        images += 1
                    else:
                        errors += 1
                        print(f"image write ended {status}: {body[:300]!r}", flush=True)
                st, _ = req("POST", q, {"name": "log.collect_system_logs", "params": {}})
                errors += st != 200
                next_sample += 60
                next_tick = time.monotonic()
            method, path, body, want = mix[i % len(mix)]
            st, _ = req(method, path, body)
            sent += 1
            errors += st != want
            i += 1
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        rss, thr, fds = proc_sample(agent.pid)
        rows.append((round((time.monotonic() - start) / 60, 2), rss, thr, fds, sent, errors, images))
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        httpd.shutdown()
        subprocess.run(["rm", "-rf", work])

    csv = os.path.join(args.out, "soak.csv")
    with open(csv, "w") as f:
        f.write("minute,rss_kib,threads,fds,requests,unexpected,images\n")
        for r in rows:
            f.write(",".join(map(str, r)) + "\n")
    write_svg(os.path.join(args.out, "soak.svg"), rows, args)
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    print(f"\nsoak: {last[0]:.1f} min, {last[4]} requests, {last[6]} image writes, "
          f"{last[5]} unexpected answers")
    print(f"RSS after minute 1 {first[1] / 1024:.1f} MiB -> end {last[1] / 1024:.1f} MiB "
          f"(max {max(r[1] for r in rows) / 1024:.1f}); threads {first[2]} -> {last[2]}; "
          f"fds {first[3]} -> {last[3]} (max {max(r[3] for r in rows)})")
    print(f"wrote {csv} and soak.svg")
    return 1 if last[5] else 0


def write_svg(path, rows, args):
    """Two panels: RSS (MiB) and fds/threads against minutes; plain SVG, no dependencies."""
    w, h, pad = 760, 420, 55
    tmax = max(r[0] for r in rows) or 1
    rss = [r[1] / 1024 for r in rows]
    cnt = [max(r[2], r[3]) for r in rows]
    rmax = max(rss) * 1.25 or 1
    cmax = max(cnt) * 1.25 or 1
    ph = (h - 3 * pad) / 2

    def pts(vals, top, vmax):
        return " ".join(
            f"{pad + (r[0] / tmax) * (w - 2 * pad):.1f},{top + ph - (v / vmax) * ph:.1f}"
            for r, v in zip(rows, vals))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{pad}" y="18" font-size="14">ipa-agent soak: {args.rate:g} req/s + 1 image write and 1 log bundle per minute, {tmax:.0f} min</text>']
    for k, (top, vmax, label) in enumerate([(pad, rmax, "RSS (MiB)"), (2 * pad + ph, cmax, "count")]):
        out.append(f'<rect x="{pad}" y="{top}" width="{w - 2 * pad}" height="{ph}" fill="none" stroke="#888"/>')
        out.append(f'<text x="8" y="{top + 12}">{label}</text>')
        for frac in (0, 0.5, 1):
            y = top + ph - frac * ph
            out.append(f'<text x="{pad - 6}" y="{y + 4}" text-anchor="end">{vmax * frac:.0f}</text>')
    out.append(f'<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{pts(rss, pad, rmax)}"/>')
    top2 = 2 * pad + ph
    out.append(f'<polyline fill="none" stroke="#2471a3" stroke-width="2" points="{pts([r[3] for r in rows], top2, cmax)}"/>')
    out.append(f'<polyline fill="none" stroke="#27ae60" stroke-width="2" points="{pts([r[2] for r in rows], top2, cmax)}"/>')
    out.append(f'<text x="{w - pad - 150}" y="{top2 + 16}" fill="#2471a3">open fds</text>')
    out.append(f'<text x="{w - pad - 80}" y="{top2 + 16}" fill="#27ae60">threads</text>')
    for frac in (0, 0.5, 1):
        x = pad + frac * (w - 2 * pad)
        out.append(f'<text x="{x}" y="{h - pad + 18}" text-anchor="middle">{tmax * frac:.0f} min</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
