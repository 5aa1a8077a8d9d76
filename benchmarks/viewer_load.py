"""The viewer under load: N browser-like clients against the real tile server and Streamlit page.

    python benchmarks/viewer_load.py --clients 20 --seconds 60 --max-requests 20000 --json viewer_load.json
    python benchmarks/viewer_load.py --viewer-dir OUT --no-page   # an existing demo/heatmap folder, tiles only

Without ``--viewer-dir`` a folder is prepared once under ``--work`` (a generated 8192 x 6144 px
pyramidal slide, a tiny seeded model, a real heatmap run). The tile server
(:class:`pathxai.viewer.server.TileServer`) runs in its own process (``--serve``), so its memory is
measured alone; the Streamlit page runs as ``pathxai view`` unless ``--no-page``. Everything binds
127.0.0.1.

Each client thread repeats a visit as a browser would make it: the page (``/`` every visit, its
scripts and styles on the first visit only, as a browser caches them), the slide's geometry, then a
zoom from the whole-slide level to full resolution around a random point, a viewport of slide tiles
and the same viewport of overlay tiles (relevance or probability) at each level, then a pan at full
resolution. About one request in ``--bad-every`` is one that must be refused (no token, a wrong
token, ``..``, percent-encoded traversal, an absolute path, a store outside the folder): each must
get 403. The run stops after ``--seconds`` or ``--max-requests``, whichever comes first.

Reported: requests, errors (a good request not answered 200 with a JPEG/PNG/JSON/HTML body, a
refused request not answered 403, any connection error), latency percentiles per kind, throughput,
the server's RSS (``/proc/PID/status``) before the load, early, midway and at the end. The exit
status is 1 when any error occurred.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("page", "asset", "info", "slide_tile", "overlay_tile", "refused")
MAGIC = {"slide_tile": b"\xff\xd8\xff", "overlay_tile": b"\x89PNG", "info": b"{", "page": b"<"}
VIEWPORT = (3, 2)  # tiles across and down: a ~760 x 510 px viewer, as the page's 480 px component


# ---- the viewer folder ----------------------------------------------------------------------------------


def prepare(work: Path, width: int, height: int) -> Path:
    """A viewer folder with one real heatmap run (reused when already there)."""
    from pathxai.model.testing import save_tiny_model
    from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
    from pathxai.slide.testing import write_synthetic_slide

    out = work / f"out_{width}x{height}"
    if (out / "pathxai-view.json").is_file():
        return out
    slides = work / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    blobs = [
        (0.37 * width, 0.4 * height, 0.27 * width, 0.26 * height),
        (0.8 * width, 0.7 * height, 0.15 * width, 0.2 * height),
    ]
    slide = write_synthetic_slide(slides / f"load_{width}x{height}.tif", width, height, levels=4, blobs=blobs)
    model = save_tiny_model(work / "model")
    settings = HeatmapSettings(model=str(model), workers=0, batch_size=32, exports=())
    result = heatmap_slide(slide, out / "heatmaps", settings)
    if result.status != "done":
        raise SystemExit(f"heatmap run failed: {result}")
    (out / "pathxai-view.json").write_text(json.dumps({"slide_roots": [str(slides)]}))
    return out


def serve(out: Path) -> None:
    """``--serve``: the tile server on 127.0.0.1; prints its URL, stops when stdin closes."""
    from pathxai.viewer.catalog import make_roots
    from pathxai.viewer.server import TileServer
    from pathxai.viewer.tiles import TileService

    server = TileServer(TileService(make_roots(out)))
    print(json.dumps({"url": server.url}), flush=True)
    sys.stdin.read()
    server.close()


# ---- processes ------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def listen_overflows() -> int:
    """The kernel's count of connection attempts dropped because a listen queue was full (all sockets)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return -1
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        names, values = head.split(), vals.split()
        if "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return -1


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_tile_server(out: Path) -> tuple[subprocess.Popen[str], str]:
    """The tile server process and its URL (token included)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the tile server did not start")
    return proc, str(json.loads(line)["url"])


def start_page(out: Path, home: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``pathxai view OUT`` on a free port (own session, so it is stopped with its children)."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pathxai", "view", str(out), "--port", str(port)],
        env={**os.environ, "HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.time()
    while time.time() - t0 < 90:
        try:
            if get("127.0.0.1", port, "/_stcore/health", 2)[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.5)
    stop_page(proc)
    raise SystemExit("the Streamlit page did not start within 90 s")


def stop_page(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``pathxai view`` and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def get(host: str, port: int, path: str, timeout: float = 60) -> tuple[int, bytes]:
    """One GET on a new connection (the tile server speaks HTTP/1.0): ``(status, body)``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "*/*", "User-Agent": "pathxai-viewer-load"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---- what a browser asks for ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """Where the clients send their requests."""

    tile_port: int
    token: str
    slide_q: str  # query naming the slide (root and path)
    store: str
    version: str
    geometry: dict[str, int]
    page_port: int | None
    assets: tuple[str, ...]

    def slide_tile(self, z: int, c: int, r: int) -> str:
        return f"/{self.token}/slide/tile/{z}/{c}_{r}.jpeg?{self.slide_q}"

    def overlay_tile(self, z: int, c: int, r: int, layer: str) -> str:
        q = urllib.parse.urlencode({"store": self.store, "layer": layer, "v": self.version})
        return f"/{self.token}/overlay/tile/{z}/{c}_{r}.png?{q}"

    def refused(self, rng: random.Random) -> str:
        """A request the server must refuse with 403."""
        ok = self.slide_tile(self.geometry["maxLevel"], 0, 0)
        tail = ok.split("/", 2)[2]
        root = self.slide_q.split("&")[0]
        z = self.geometry["maxLevel"]
        return rng.choice(
            [
                "/" + tail,  # no token
                "/" + "x" * len(self.token) + "/" + tail,  # a wrong token
                f"/{self.token}/slide/tile/{z}/0_0.jpeg?{root}&path=../../../etc/passwd",
                f"/{self.token}/slide/tile/{z}/0_0.jpeg?{root}&path=%252e%252e%252fetc%252fpasswd",
                f"/{self.token}/slide/tile/{z}/0_0.jpeg?{root}&path=%2Fetc%2Fpasswd",
                f"/{self.token}/slide/info?{root}&path=..%2F..%2F..%2Fetc%2Fpasswd",
                f"/{self.token}/overlay/tile/{z}/0_0.png?store=../../../etc/passwd&layer=relevance",
            ]
        )


def discover(tile_url: str, out: Path, page_port: int | None) -> Site:
    """The slide, store and page assets the clients will ask for."""
    from pathxai.viewer.catalog import make_roots, scan

    parts = urllib.parse.urlsplit(tile_url)
    token = parts.path.strip("/")
    entry = next(e for e in scan(make_roots(out)).slides if e.slide_loc is not None)
    assert entry.slide_loc is not None
    slide_q = urllib.parse.urlencode({"root": entry.slide_loc[0], "path": entry.slide_loc[1]})
    status, body = get("127.0.0.1", int(parts.port or 80), f"/{token}/slide/info?{slide_q}")
    if status != 200:
        raise SystemExit(f"slide info: HTTP {status}")
    assets: tuple[str, ...] = ()
    if page_port is not None:
        html = get("127.0.0.1", page_port, "/")[1].decode("utf-8", "replace")
        found = re.findall(r'(?:src|href)="\./((?:static)/[^"]+)"', html)
        assets = tuple(dict.fromkeys("/" + a for a in found))
    return Site(
        int(parts.port or 80),
        token,
        slide_q,
        entry.store_rel,
        entry.store_version,
        json.loads(body),
        page_port,
        assets,
    )


def viewport(site: Site, z: int, fx: float, fy: float) -> list[tuple[int, int]]:
    """Tile indices of a viewport centred on the fractional slide position ``(fx, fy)`` at level ``z``."""
    g = site.geometry
    d = 2.0 ** (g["maxLevel"] - z)
    cols = max(1, -(-int(g["width"] / d) // g["tileSize"]))
    rows = max(1, -(-int(g["height"] / d) // g["tileSize"]))
    c0 = min(max(0, int(fx * cols) - VIEWPORT[0] // 2), max(0, cols - VIEWPORT[0]))
    r0 = min(max(0, int(fy * rows) - VIEWPORT[1] // 2), max(0, rows - VIEWPORT[1]))
    return [
        (c, r) for r in range(r0, min(rows, r0 + VIEWPORT[1])) for c in range(c0, min(cols, c0 + VIEWPORT[0]))
    ]


def visit(site: Site, rng: random.Random, first: bool) -> list[tuple[str, str]]:
    """The requests of one page visit, in order: ``(kind, path)``."""
    reqs: list[tuple[str, str]] = []
    if site.page_port is not None:
        reqs.append(("page", "/"))
        reqs += [("asset", a) for a in site.assets] if first else []
    reqs.append(("info", f"/{site.token}/slide/info?{site.slide_q}"))
    top = site.geometry["maxLevel"]
    lo = max(0, top - 5)  # the level where the whole slide fits in one or two tiles
    fx, fy = rng.random(), rng.random()
    layer = rng.choice(("relevance", "probability"))
    for z in range(lo, top + 1):
        for c, r in viewport(site, z, fx, fy):
            reqs.append(("slide_tile", site.slide_tile(z, c, r)))
            reqs.append(("overlay_tile", site.overlay_tile(z, c, r, layer)))
    for _ in range(2):  # pan at full resolution
        fx = min(1.0, max(0.0, fx + rng.uniform(-0.1, 0.1)))
        fy = min(1.0, max(0.0, fy + rng.uniform(-0.1, 0.1)))
        for c, r in viewport(site, top, fx, fy):
            reqs.append(("slide_tile", site.slide_tile(top, c, r)))
            reqs.append(("overlay_tile", site.overlay_tile(top, c, r, layer)))
    return reqs


# ---- the load -------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Latencies and outcomes, shared by the client threads (appends only)."""

    latency: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: list[str] = field(default_factory=list)
    refused_sent: int = 0
    refused_403: int = 0
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, budget: int) -> bool:
        """Reserve one request of the budget (False once it is spent)."""
        with self.lock:
            if self.count >= budget:
                return False
            self.count += 1
            return True


def one_request(site: Site, kind: str, path: str, tally: Tally) -> None:
    """Send one request, check its answer and record its latency."""
    port = site.page_port if kind in ("page", "asset") else site.tile_port
    assert port is not None
    t0 = time.perf_counter()
    try:
        status, body = get("127.0.0.1", port, path)
    except (OSError, http.client.HTTPException) as exc:
        tally.errors.append(f"{kind} {path}: {type(exc).__name__}: {exc}")
        return
    tally.latency[kind].append(time.perf_counter() - t0)
    if kind == "refused":
        with tally.lock:
            tally.refused_sent += 1
            tally.refused_403 += status == 403
        if status != 403:
            tally.errors.append(f"not refused (HTTP {status}): {path}")
    elif status != 200 or not body.startswith(MAGIC.get(kind, b"")):
        tally.errors.append(f"{kind} {path}: HTTP {status}, {body[:80]!r}")


def client(site: Site, seed: int, deadline: float, budget: int, bad_every: int, tally: Tally) -> None:
    """One browser-like client: visits until the deadline or the shared request budget."""
    rng = random.Random(seed)
    first = True
    while time.monotonic() < deadline:
        for kind, path in visit(site, rng, first):
            if time.monotonic() >= deadline or not tally.take(budget):
                return
            if bad_every and rng.randrange(bad_every) == 0:
                kind, path = "refused", site.refused(rng)
            one_request(site, kind, path, tally)
        first = False


def sample_rss(pids: dict[str, int], samples: list[dict[str, float]], stop: threading.Event) -> None:
    """Append ``{"t": s, name: MB, ...}`` every 0.5 s until ``stop``."""
    t0 = time.monotonic()
    while not stop.is_set():
        samples.append({"t": time.monotonic() - t0, **{n: rss_mb(p) for n, p in pids.items()}})
        stop.wait(0.5)


def percentiles(values: list[float]) -> dict[str, float | int]:
    """Count and p50/p95/p99/max in milliseconds."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def p(q: float) -> float:
        return round(1000 * v[min(len(v) - 1, int(q * len(v)))], 1)

    return {"n": len(v), "p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0)}


def memory(samples: list[dict[str, float]], name: str, idle: float) -> dict[str, Any]:
    """RSS before the load, early (10 % in), midway, at the end and the growths (MB)."""
    during = [s[name] for s in samples if s[name] > 0] or [idle]

    def at(frac: float) -> float:
        return round(during[min(len(during) - 1, int(frac * len(during)))], 1)

    early, end = at(0.1), round(during[-1], 1)
    return {
        "timeline_mb": [at(i / 10) for i in range(10)] + [end],
        "start_mb": round(idle, 1),
        "early_mb": early,
        "middle_mb": at(0.5),
        "end_mb": end,
        "peak_mb": round(max(during), 1),
        "growth_mb": round(end - idle, 1),
        "growth_after_warmup_mb": round(end - early, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, start the servers, run the clients, stop everything; the result as a dict."""
    out = Path(args.viewer_dir) if args.viewer_dir else prepare(Path(args.work), *args.slide_size)
    tile_proc, tile_url = start_tile_server(out)
    page_proc = page_port = None
    try:
        if not args.no_page:
            page_proc, page_port = start_page(out, Path(args.work) / "home")
        site = discover(tile_url, out, page_port)
        pids = {"tile_server": tile_proc.pid, **({"page": page_proc.pid} if page_proc else {})}
        time.sleep(1.0)
        idle = {n: rss_mb(p) for n, p in pids.items()}
        tally, samples, stop = Tally(), [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(pids, samples, stop), daemon=True)
        sampler.start()
        overflows = listen_overflows()
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        threads = [
            threading.Thread(
                target=client,
                args=(site, args.seed + i, deadline, args.max_requests, args.bad_every, tally),
                name=f"client-{i}",
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        overflows = listen_overflows() - overflows
        stop.set()
        sampler.join()
        alive = {n: (tile_proc if n == "tile_server" else page_proc).poll() is None for n in pids}  # type: ignore[union-attr]
    finally:
        if page_proc is not None:
            stop_page(page_proc)
        if tile_proc.stdin is not None:
            tile_proc.stdin.close()
        tile_proc.wait(20)
    answered = sum(len(v) for v in tally.latency.values())
    return {
        "command": " ".join(["python", "benchmarks/viewer_load.py", *sys.argv[1:]]),
        "clients": args.clients,
        "seconds_limit": args.seconds,
        "max_requests": args.max_requests,
        "slide": site.geometry,
        "page": page_port is not None,
        "wall_s": round(wall, 1),
        "requests": tally.count,
        "answered": answered,
        "errors": len(tally.errors),
        "error_examples": tally.errors[:10],
        "refused_sent": tally.refused_sent,
        "refused_403": tally.refused_403,
        "throughput_rps": round(answered / wall, 1) if wall > 0 else 0.0,
        "latency": {k: percentiles(v) for k, v in tally.latency.items()},
        "rss": {n: memory(samples, n, idle[n]) for n in pids},
        "servers_alive_at_end": alive,
        "listen_overflows": overflows,
        "loadavg_1min": round(os.getloadavg()[0], 1),
    }


def table(res: dict[str, Any]) -> str:
    """The result as a plain-text table."""
    lines = [
        f"{res['clients']} clients, {res['wall_s']} s, {res['requests']} requests "
        f"({res['throughput_rps']}/s), errors {res['errors']}, refused {res['refused_403']}/{res['refused_sent']} "
        f"with 403, load average {res['loadavg_1min']}, listen-queue overflows {res['listen_overflows']} "
        "(whole machine)",
        f"{'kind':14s}{'n':>7s}{'p50 ms':>9s}{'p95 ms':>9s}{'p99 ms':>9s}{'max ms':>9s}",
    ]
    for kind, s in res["latency"].items():
        if s["n"]:
            lines.append(
                f"{kind:14s}{s['n']:7d}{s['p50_ms']:9.1f}{s['p95_ms']:9.1f}{s['p99_ms']:9.1f}{s['max_ms']:9.1f}"
            )
    for name, m in res["rss"].items():
        lines.append(
            f"RSS {name}: start {m['start_mb']} / early {m['early_mb']} / middle {m['middle_mb']} / end "
            f"{m['end_mb']} MB (peak {m['peak_mb']}; growth {m['growth_mb']:+}, after warm-up "
            f"{m['growth_after_warmup_mb']:+} MB)\n  timeline (every 10 %): {m['timeline_mb']}"
        )
    lines += [f"error: {e}" for e in res["error_examples"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0, help="time limit of the load")
    p.add_argument("--max-requests", type=int, default=20000, help="request limit of the load")
    p.add_argument(
        "--bad-every", type=int, default=25, help="about one request in N must be refused (0: none)"
    )
    p.add_argument("--viewer-dir", default=None, help="an existing viewer folder (default: prepare one)")
    p.add_argument("--work", default="/tmp/pathxai_viewer_load", help="where the prepared folder is kept")
    p.add_argument("--slide-size", type=int, nargs=2, default=(8192, 6144), metavar=("W", "H"))
    p.add_argument("--no-page", action="store_true", help="tile server only (no Streamlit page)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--serve", default=None, metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(Path(args.serve))
        return 0
    res = run(args)
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    ok = (
        res["errors"] == 0
        and res["refused_403"] == res["refused_sent"]
        and all(res["servers_alive_at_end"].values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
