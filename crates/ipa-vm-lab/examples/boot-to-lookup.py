#!/usr/bin/env python3
"""One direct-kernel boot under QEMU TCG, timed on the host (used by scripts/bench-ramdisk.sh).

Runs INSIDE a network namespace that has a bridge with BRIDGE_IP and a DHCP server on it
(`ip netns exec NS python3 boot-to-lookup.py ...`). It
  * serves HTTP on BRIDGE_IP:PORT, answering every request 404 and noting when it arrived
    (the agent's `GET /` version probe, then `GET /v1/lookup?addresses=...`);
  * starts QEMU (q35, OVMF pflash code read-only + a per-run VARS copy, 1 vCPU, TCG, a tap on
    the bridge, a sparse virtio disk, virtio-rng) with -kernel/-initrd/-append and reads the
    serial console from a pipe, stamping every line with the host's monotonic clock;
  * stops QEMU (by its PID) at the first lookup (mode `ours`) or at the `BASELINE-LEASE` line
    (mode `baseline`), or after TIMEOUT seconds;
  * prints one JSON object.

Clock: every console line that carries a guest uptime stamp (kernel printk `[  1.234567]`,
ipa-init `ipa-init: [    1.234]`) gives an upper bound of the host time of guest uptime 0
(arrival - stamp: a line arrives after it was stamped). The smallest one is the offset; the
first lookup's guest uptime = its arrival at the HTTP server - offset. The arrival of the
request and of the console lines are read from the same clock in this one process, so the
only error is the console latency of the tightest anchor line (a few ms under TCG).
"""

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
KMSG = re.compile(r"^\[\s*(\d+\.\d+)\]")
INIT = re.compile(r"ipa-init: \[\s*(\d+\.\d+)\] (.*)$")
LEASE = re.compile(r"^(eth\S*|en\S*) \S+: (\d+\.\d+\.\d+\.\d+)/\d+")
WALL = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ours", "baseline"], required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--append", required=True)
    ap.add_argument("--bridge-ip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tap", required=True)
    ap.add_argument("--mac", default="52:54:00:be:4c:01")
    ap.add_argument("--memory", type=int, default=512)
    ap.add_argument("--code", default="/usr/share/OVMF/OVMF_CODE_4M.fd")
    ap.add_argument("--vars", default="/usr/share/OVMF/OVMF_VARS_4M.fd")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--console", required=True, help="write the stamped console here")
    a = ap.parse_args()

    t_mono0 = time.monotonic()
    requests = []  # (monotonic, method, path)
    lookup = threading.Event()

    class H(http.server.BaseHTTPRequestHandler):
        def _any(self):
            t = time.monotonic()
            requests.append((t, self.command, self.path))
            if self.path.startswith("/v1/lookup"):
                lookup.set()
            body = b'{"error_message": "{\\"faultstring\\": \\"bench: no Ironic here\\"}"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _any

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer((a.bridge_ip, a.port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    work = tempfile.mkdtemp(prefix="ipa-bench-boot-")
    vars_copy = os.path.join(work, "vars.fd")
    shutil.copyfile(a.vars, vars_copy)
    disk = os.path.join(work, "disk.raw")
    with open(disk, "wb") as f:
        f.truncate(2 << 30)
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-m", str(a.memory), "-smp", "1",
        "-display", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio",
        "-drive", f"if=pflash,format=raw,readonly=on,file={a.code}",
        "-drive", f"if=pflash,format=raw,file={vars_copy}",
        "-drive", f"file={disk},if=virtio,format=raw,cache=none",
        "-netdev", f"tap,id=n0,ifname={a.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={a.mac}",
        "-device", "virtio-rng-pci",
        "-kernel", a.kernel, "-initrd", a.initrd, "-append", a.append,
    ]
    qerr = open(os.path.join(work, "qemu.err"), "wb")
    t_start = time.monotonic()
    q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=qerr)
    lines = []  # (monotonic, text)
    baseline_done = threading.Event()

    def reader():
        buf = b""
        fd = q.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            t = time.monotonic()
            buf += chunk
            while True:
                i = buf.find(b"\n")
                if i < 0:
                    break
                text = ANSI.sub("", buf[:i].decode("utf-8", "replace")).replace("\r", "")
                buf = buf[i + 1:]
                lines.append((t, text))
                if "BASELINE-LEASE" in text or "BASELINE-NOLEASE" in text:
                    baseline_done.set()

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    done = lookup if a.mode == "ours" else baseline_done
    deadline = t_start + a.timeout
    while time.monotonic() < deadline and q.poll() is None and not done.is_set():
        done.wait(0.1)
    timed_out = not done.is_set()
    if a.mode == "ours" and not timed_out:
        # Let the agent's `lookup failed` line (logged after the 404) reach the console.
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end and not any("lookup failed" in x for _, x in lines[-20:]):
            time.sleep(0.05)
    # Stop the QEMU we started, by PID.
    if q.poll() is None:
        q.send_signal(signal.SIGTERM)
        try:
            q.wait(10)
        except subprocess.TimeoutExpired:
            q.kill()
            q.wait()
    rt.join(5)
    srv.shutdown()
    srv.server_close()

    with open(a.console, "w") as f:
        for t, text in lines:
            f.write(f"{t - t_start:10.3f} {text}\n")
    err = open(os.path.join(work, "qemu.err"), "rb").read().decode("utf-8", "replace")
    shutil.rmtree(work, ignore_errors=True)

    # Anchors: guest uptime stamps. Early printk stamps come from a jiffies-based sched_clock
    # that restarts when tsc-early takes over (the stamps go backwards): only kernel stamps
    # after the last such restart are on the uptime clock.
    anchors = []
    last_k = None
    for t, text in lines:
        m = KMSG.match(text)
        if m:
            s_ = float(m.group(1))
            if last_k is not None and s_ < last_k - 0.001:
                anchors = [x for x in anchors if x[2] != "kernel"]
            last_k = s_
            if s_ > 0.0:
                anchors.append((t, s_, "kernel"))
            continue
        m = INIT.search(text)
        if m:
            anchors.append((t, float(m.group(1)), "ipa-init"))
    out = {
        "mode": a.mode,
        "timed_out": timed_out,
        "qemu_rc": q.returncode,
        "qemu_stderr": err[-500:],
        "console_lines": len(lines),
        "anchors": len(anchors),
    }
    if not anchors:
        print(json.dumps(out))
        return 1
    offset, stamp0, kind0 = min(((t - s), s, k) for t, s, k in anchors)
    out["offset_anchor"] = {"uptime": stamp0, "kind": kind0}
    # Rate check: least-squares slope of arrival vs stamp over the kernel-side anchors
    # with the smallest latency per second of uptime (1.0 = guest clock keeps host time).
    best = {}
    for t, s, k in anchors:
        key = int(s)
        if key not in best or t - s < best[key][0] - best[key][1]:
            best[key] = (t, s)
    pts = list(best.values())
    if len(pts) >= 3:
        n = len(pts)
        mx = sum(s for _, s in pts) / n
        my = sum(t for t, _ in pts) / n
        sxx = sum((s - mx) ** 2 for _, s in pts)
        if sxx > 0:
            out["clock_slope"] = round(sum((s - mx) * (t - my) for t, s in pts) / sxx, 4)
    out["qemu_start_uptime"] = round(t_start - offset, 3)  # negative: firmware time before the kernel
    first_line = next((t for t, _ in lines), None)
    if first_line is not None:
        out["first_console_line_uptime"] = round(first_line - offset, 3)

    def up(t):
        return round(t - offset, 3)

    for t, text in lines:
        m = KMSG.match(text)
        if m and "Run /init as init process" in text:
            out["run_init_uptime"] = float(m.group(1))
        if m and "Freeing initrd memory" in text:
            out["initrd_freed_uptime"] = float(m.group(1))
    if a.mode == "baseline":
        for t, text in lines:
            if "BASELINE-LEASE" in text:
                out["lease_uptime"] = float(text.split("BASELINE-LEASE", 1)[1].split()[0])
                out["lease_line_arrival_uptime"] = up(t)
                break
            if "BASELINE-NOLEASE" in text:
                out["error"] = "no lease"
    else:
        for t, m, p in requests:
            if p.startswith("/v1/lookup"):
                out["first_lookup_uptime"] = up(t)
                out["first_lookup_path"] = p[:120]
                break
        if requests:
            out["first_request_uptime"] = up(requests[0][0])
            out["first_request"] = f"{requests[0][1]} {requests[0][2][:60]}"
        agent_start_up = None
        for t, text in lines:
            m = INIT.search(text)
            if not m:
                continue
            s, msg = float(m.group(1)), m.group(2)
            if "starting as PID 1" in msg and "init_start_uptime" not in out:
                out["init_start_uptime"] = s
            if LEASE.match(msg) and "lease_uptime" not in out:
                out["lease_uptime"] = s
                out["lease_line"] = msg[:100]
            if msg.startswith("loaded ") and " modules in " in msg and "modules_loaded_uptime" not in out:
                out["modules_loaded_uptime"] = s
            if msg.startswith("starting /usr/bin/ipa-agent") and agent_start_up is None:
                agent_start_up = s
                out["agent_start_uptime"] = s
        # Cross-check from the agent's own wall-clock log stamps: ipa-init's `starting` uptime +
        # (wall time of the first `lookup failed` line - wall time of the agent's first line).
        walls = []
        for _, text in lines:
            if INIT.search(text) or KMSG.match(text):
                continue
            m = WALL.search(text)
            if m:
                walls.append((datetime.fromisoformat(m.group(1)), text))
        # The agent logs `looking up the node in Ironic` just before its version probe and
        # lookup; `lookup failed` after the first answer.
        if walls and agent_start_up is not None:
            first_wall = walls[0][0]
            for key, needle in (("looking_up", "looking up the node"), ("lookup_failed", "lookup failed")):
                w = next((w for w, text in walls if needle in text), None)
                if w is not None:
                    out[f"agent_first_log_to_{key}_s"] = round((w - first_wall).total_seconds(), 3)
                    out[f"{key}_uptime_from_agent_wallclock"] = round(
                        agent_start_up + (w - first_wall).total_seconds(), 3)
    print(json.dumps(out))
    return 0 if not timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
