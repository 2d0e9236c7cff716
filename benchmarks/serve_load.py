"""`transferkit serve` under load: throughput and latency with 1, 8 and 32 concurrent clients, against
`predict_proba` on the same images in one process, and a 1 GB upload refused while memory stays flat.

ELPV test cells (the split of predict_throughput.py: `make_splits(elpv, 0.1, 0.25, seed=0).test`),
sent as PNG files, one image per request. Each client loops over the images in turn; a request counts
as an error unless it returns 200 with a prediction. Before timing, the server answers a warm-up round.

- in-process: `transferkit.load(BUNDLE, backend).predict_proba(paths, batch_size=MAX_BATCH)` on the
  same files (decoding included, as in the server), run before the server starts so the two never
  share the CPU; the median of `--repeats` rounds after a warm-up;
- server: `python -m transferkit serve BUNDLE` as its own process, clients in this process
  (asyncio + httpx), so on a small machine the clients take CPU from the server;
- parity: the largest difference between the server's probabilities and predict_proba's;
- 1 GB upload: a 1 GiB body sent over a raw socket, once declared (Content-Length) and once chunked
  (no length); the server's RSS (VmRSS) before, at its highest while sending, and after.

    python benchmarks/serve_load.py BUNDLE [--clients 1 8 32] [--requests 256] [--backend auto]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import transferkit
from default_fit import RESULTS, _cpu, _source_state
from transferkit.data import make_splits, resolve_data
from transferkit.models.saved import find_bundle
from transferkit.testing.servers import free_port, start_server

UPLOAD_BYTES = 1024**3
CHUNK = 1024**2


def elpv_test_paths(limit: int) -> list[str]:
    source = resolve_data("elpv")
    test = make_splits(source, 0.1, 0.25, seed=0).test[:limit]
    return [source.records[index].path for index in test]


def in_process(bundle: Path, backend: str, paths: list[str], batch: int, repeats: int) -> dict[str, Any]:
    """Images per second of batched predict_proba on the files, and its probabilities."""
    classifier = transferkit.load(bundle, backend=backend)
    probabilities = classifier.predict_proba(paths, batch_size=batch)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.predict_proba(paths, batch_size=batch)
        times.append(time.perf_counter() - started)
    speed = len(paths) / statistics.median(times)
    return {"images_per_s": speed, "probabilities": probabilities, "backend": classifier.backend}


def launch_server(bundle: Path, args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "transferkit", "serve", str(bundle), "--port", str(port)]
    command += ["--backend", args.backend, "--max-batch", str(args.max_batch)]
    command += ["--max-wait-ms", str(args.max_wait_ms), "--max-upload-mb", "20"]
    try:
        return start_server(command, f"http://127.0.0.1:{port}/health", log, timeout_s=120)
    except RuntimeError as err:
        raise SystemExit(str(err)) from None


async def load_level(
    url: str, images: list[tuple[str, bytes]], clients: int, requests: int
) -> dict[str, Any]:
    """`requests` single-image requests from `clients` concurrent clients: throughput, latency, errors."""
    latencies: list[float] = []
    errors = 0
    next_request = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for index in next_request:  # shared: each request is taken by one client
            name, data = images[index % len(images)]
            started = time.perf_counter()
            try:
                response = await http.post("/predict", files=[("images", (name, data, "image/png"))])
                ok = response.status_code == 200 and "label" in response.json()["results"][0]
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": requests,
        "images_per_s": requests / wall,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "errors": errors,
    }


def server_probabilities(url: str, images: list[tuple[str, bytes]], labels: list[str]) -> np.ndarray:
    with httpx.Client(base_url=url, timeout=120) as http:
        rows = []
        for start in range(0, len(images), 32):
            files = [("images", (name, data, "image/png")) for name, data in images[start : start + 32]]
            results = http.post("/predict", files=files).json()["results"]
            rows += [[result["probabilities"][label] for label in labels] for result in results]
    return np.array(rows)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def huge_upload(port: int, pid: int, chunked: bool) -> dict[str, Any]:
    """A 1 GiB multipart body over a raw socket, stopped as soon as the server answers."""
    before, peak, sending = rss_mb(pid), [0.0], threading.Event()

    def watch() -> None:
        while sending.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD_BYTES}"
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    ).encode()
    part = b'--b\r\nContent-Disposition: form-data; name="images"; filename="huge.png"\r\n\r\n'
    sending.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        sent, answer = _send_until_answered(port, head, part, chunked)
    finally:
        sending.clear()
        watcher.join()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    return {
        "upload": "chunked, no length" if chunked else "declared 1 GiB",
        "status": status,
        "mb_sent_before_answer": round(sent / 1024**2, 1),
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak[0], before), 1),
        "rss_after_mb": round(rss_mb(pid), 1),
    }


def _send_until_answered(port: int, head: bytes, part: bytes, chunked: bool) -> tuple[int, bytes]:
    """Bytes of body sent before the server answered, and the start of its answer."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        while sent < UPLOAD_BYTES:
            if select.select([connection], [], [], 0)[0]:  # the server answered before the end
                break
            data = part if sent == 0 else b"\0" * min(CHUNK, UPLOAD_BYTES - sent)
            try:
                connection.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
            except OSError:
                break  # the server closed the connection; its answer may still be readable
            sent += len(data)
        answer = _receive(connection)
    return sent, answer


def _receive(connection: socket.socket) -> bytes:
    try:
        return connection.recv(4096)
    except OSError:  # reset by the server
        return b""


def write_results(
    out: Path, rows: list[dict[str, Any]], uploads: list[dict[str, Any]], header: list[str]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "serve_load.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [*header, "", "| mode | clients | images/s | vs in-process | p50 ms | p99 ms | errors |"]
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['clients']} | {row['images_per_s']:.1f} | {row['vs_in_process']:.2f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
        )
    lines += ["", "| 1 GiB upload | status | MB sent before the answer | RSS before | peak | after (MB) |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for upload in uploads:
        lines.append(
            f"| {upload['upload']} | {upload['status']} | {upload['mb_sent_before_answer']} | "
            f"{upload['rss_before_mb']} | {upload['rss_peak_mb']} | {upload['rss_after_mb']} |"
        )
    (out / "serve_load.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="run directory or bundle folder to serve")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=256, help="requests per client level")
    parser.add_argument("--limit", type=int, default=256, help="ELPV test images to send")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of in-process predict_proba")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for serve_load.{csv,md}")
    args = parser.parse_args()
    bundle = find_bundle(args.bundle)  # a clear error for a path that holds no bundle
    paths = elpv_test_paths(args.limit)
    baseline = in_process(bundle, args.backend, paths, args.max_batch, args.repeats)
    backend = baseline["backend"]  # what "auto" chose; the server chooses the same way
    images = [(Path(path).name, Path(path).read_bytes()) for path in paths]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()[0]
    server = launch_server(bundle, args, port, Path(tempfile.mkdtemp()) / "server.log")
    try:
        labels = httpx.get(f"{url}/info").json()["labels"]
        parity = float(np.abs(server_probabilities(url, images, labels) - baseline["probabilities"]).max())
        rows = [{"mode": "in-process predict_proba", "clients": 0, "requests": len(paths), "errors": 0}]
        rows[0].update(images_per_s=baseline["images_per_s"], p50_ms=float("nan"), p99_ms=float("nan"))
        for clients in args.clients:
            print(f"{clients} clients ...", file=sys.stderr)
            asyncio.run(load_level(url, images, clients, min(len(images), 2 * clients)))  # warm-up
            rows.append({"mode": "server", **asyncio.run(load_level(url, images, clients, args.requests))})
        print("1 GiB uploads ...", file=sys.stderr)
        uploads = [huge_upload(port, server.pid, chunked) for chunked in (False, True)]
        alive = httpx.get(f"{url}/health").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    for row in rows:
        row["vs_in_process"] = row["images_per_s"] / baseline["images_per_s"]
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    header = [
        f"# transferkit serve under load: {args.bundle.name}, {backend} backend, ELPV test cells",
        "",
        f"Command: `{command}` at commit {_source_state()}; {_cpu()}; 1-minute load average "
        f"{load_before:.2f} at the start.",
        "",
        f"Server: --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}, one image per request; "
        f"clients in the benchmark's process. Largest difference between the server's probabilities "
        f"and predict_proba's: {parity:.2g}. Server still healthy after the uploads: {alive}.",
    ]
    write_results(args.out, rows, uploads, header)
    print((args.out / "serve_load.md").read_text())


if __name__ == "__main__":
    main()
