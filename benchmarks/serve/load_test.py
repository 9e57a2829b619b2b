"""Load test for `nertune serve`: bounded, loopback only, stops by itself.

Starts the server on a free loopback port (or uses --url, which must be loopback),
then runs three phases against it and writes one JSON report:

  1. sequential: --sequential requests, one at a time (no batching possible);
  2. concurrent: --requests requests from --concurrency clients, a fraction
     --malformed of them malformed (bad JSON, non-UTF-8, wrong types, missing
     fields, over the limits...), each of which must get its 4xx;
  3. with --compare-unbatched, phase 2 again against a second server started
     with --max-wait-ms 0 --max-batch-texts 1, to separate the gain of
     micro-batching from the gain of mere concurrency.

Reported per phase: throughput, latency p50/p95/p99 (valid requests), status
counts, 5xx, dropped connections (transport errors), wrong answers (a malformed
request that got 200 or a valid one that did not); for the concurrent phase also
the cores the load test itself and the server kept busy (`cores_used`). Its
clients are httpx's, or with --client raw lean kept-alive asyncio connections
(`RawConnection`) that take little CPU from the server on the same cores. Every phase has a time limit
(--time-limit seconds for the whole run); the script exits 1 when a phase had a
5xx, a dropped connection, a wrong answer or ran out of time.

    .venv/bin/python -m benchmarks.serve.load_test runs/tiny --requests 2000 --concurrency 16 --malformed 0.05 --compare-unbatched
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx

from benchmarks import common
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.machine import cpu_description
from nertune.serve.process import ServerProcess

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---- the requests ------------------------------------------------------------------


def sentences(count: int = 3000) -> list[str]:
    return [" ".join(s.words) for s in read_conll(conll2003_files()["test"]).sentences if len(s.words) > 2][:count]


def malformed_requests(limits: dict) -> list[tuple[str, bytes, int]]:
    """(kind, body, expected status): one of each kind of bad request the API must refuse."""
    return [
        ("invalid_json", b'{"text": "Paris', 400),
        ("non_utf8", '{"text": "Z\xfcrich"}'.encode("latin-1"), 400),
        ("wrong_type", b'{"text": 12345}', 422),
        ("missing_field", b'{"txt": "Paris"}', 422),
        ("not_an_object", b'["Paris"]', 422),
        ("model_path_field", b'{"text": "Paris", "model": "/etc/passwd"}', 422),
        ("text_too_long", json.dumps({"text": "a" * (limits["max_text_chars"] + 1)}).encode(), 413),
        ("too_many_texts", json.dumps({"texts": ["a"] * (limits["max_texts"] + 1)}).encode(), 413),
        ("body_too_large", json.dumps({"text": "a" * limits["max_body_bytes"]}).encode(), 413),
    ]


def plan(n: int, malformed: float, texts: list[str], bad: list, rng: random.Random) -> list[tuple[str, bytes, int]]:
    n_bad = round(n * malformed)
    items = [bad[i % len(bad)] for i in range(n_bad)]
    items += [("valid", json.dumps({"text": rng.choice(texts)}).encode(), 200) for _ in range(n - n_bad)]
    rng.shuffle(items)
    return items


# ---- one phase -----------------------------------------------------------------------


class RawConnection:
    """One kept-alive HTTP/1.1 connection on asyncio streams: a client that costs the shared cores little.

    httpx builds a request and a response object per call, which on 2 cores takes CPU from the server
    under test (`cores_used` in the report). This one writes a prebuilt head and reads the status, the
    headers and a Content-Length (or chunked) body; a response that says `connection: close` or a kept-alive
    connection the server has closed opens a new one."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.head = b"POST /v1/entities HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n" % (
            self.host.encode(),
            self.port,
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        """The response's status; on any failure (a timeout's cancellation too) the connection is closed first."""
        try:
            return await self._post(body)
        except BaseException:
            self.close()
            raise

    async def _post(self, body: bytes) -> int:
        for reused in (self.writer is not None, False):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(self.head + b"content-length: %d\r\n\r\n" % len(body) + body)
            try:
                await self.writer.drain()
            except ConnectionError:
                pass  # the server may answer (413) and close before it has read the whole body
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as error:
                self.close()
                if reused and not error.partial:
                    continue  # the server had closed this kept-alive connection: once more on a new one
                raise
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            if "content-length" in headers:
                await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    await self.reader.readexactly(size + 2)
                await self.reader.readuntil(b"\r\n")
            if headers.get("connection") == "close":
                self.close()
            return int(lines[0].split(" ", 2)[1])
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_phase(url: str, items: list, concurrency: int, time_limit: float, client_kind: str = "httpx") -> dict:
    records: list[tuple[str, int, float, int]] = []  # kind, status (-1: dropped, -2: timeout), seconds, expected
    errors: Counter = Counter()
    next_item = iter(items)
    headers = {"content-type": "application/json"}

    async def client(http: httpx.AsyncClient):
        connection = RawConnection(url) if client_kind == "raw" else None
        for kind, body, expected in next_item:
            started = time.perf_counter()
            try:
                if connection is None:
                    status = (await http.post("/v1/entities", content=body, headers=headers)).status_code
                else:
                    status = await asyncio.wait_for(connection.post(body), 60)
            except (httpx.TimeoutException, asyncio.TimeoutError):
                status = -2
            except (httpx.TransportError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
                status = -1
                errors[type(error).__name__] += 1
            records.append((kind, status, time.perf_counter() - started, expected))
        if connection is not None:
            connection.close()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(http)) for _ in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                errors[f"client:{type(task.exception()).__name__}"] += 1
        elapsed = time.perf_counter() - started
    return summarize(records, elapsed, concurrency, len(items), timed_out=bool(pending), errors=errors)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summarize(records, elapsed: float, concurrency: int, planned: int, timed_out: bool, errors: Counter) -> dict:
    valid = [seconds for kind, status, seconds, _ in records if kind == "valid" and status == 200]
    statuses = Counter(str(status) for _, status, _, _ in records)
    return {
        "concurrency": concurrency,
        "planned": planned,
        "completed": len(records),
        "timed_out": timed_out,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(records) / elapsed, 2) if elapsed else None,
        "valid_per_second": round(len(valid) / elapsed, 2) if elapsed else None,
        "latency_ms_valid": {f"p{q}": round(1000 * percentile(valid, q), 1) if valid else None for q in (50, 95, 99)}
        | {"max": round(1000 * max(valid), 1) if valid else None},
        "status_counts": dict(sorted(statuses.items())),
        "malformed_by_kind": dict(Counter(f"{kind}:{status}" for kind, status, _, _ in records if kind != "valid")),
        "server_errors_5xx": sum(1 for _, status, _, _ in records if status >= 500),
        "dropped_connections": statuses.get("-1", 0),
        "client_timeouts": statuses.get("-2", 0),
        "wrong_answers": sum(1 for _, status, _, expected in records if status >= 0 and status != expected),
        "transport_errors": dict(errors),
    }


def healthy(phase: dict) -> bool:
    return (
        not phase["timed_out"]
        and phase["completed"] == phase["planned"]
        and not (phase["server_errors_5xx"] or phase["dropped_connections"] or phase["client_timeouts"] or phase["wrong_answers"])
    )


def batching(url: str) -> dict:
    return httpx.get(url + "/healthz", timeout=10).json()["batching"]


def delta(before: dict, after: dict, seconds: float) -> dict:
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    busy = after["model_seconds"] - before["model_seconds"]
    return {
        "batches": batches,
        "requests": requests,
        "mean_requests_per_batch": round(requests / batches, 2) if batches else None,
        "model_busy_fraction": round(busy / seconds, 3) if seconds else None,
    }


# ---- the run ---------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc); None without a pid or /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def cores_used(before: tuple[float, float | None], pid: int | None, seconds: float) -> dict:
    """Cores the load test itself (its clients) and the server kept busy over a phase, on average."""
    client, server = time.process_time() - before[0], cpu_seconds(pid)
    return {
        "load_test": round(client / seconds, 2),
        "server": round((server - before[1]) / seconds, 2) if server is not None and before[1] is not None else None,
    }


def measure(url: str, args, texts: list[str], rng: random.Random, deadline: float, sequential: bool, pid: int | None = None) -> dict:
    limits = httpx.get(url + "/v1/model", timeout=10).json()["limits"]
    asyncio.run(run_phase(url, plan(16, 0, texts, [], rng), 4, 60))  # warm-up, not reported
    phases = {}
    if sequential:
        before = batching(url)
        phases["sequential"] = asyncio.run(
            run_phase(url, plan(args.sequential, 0, texts, [], rng), 1, max(1.0, deadline - time.monotonic()))
        )
        phases["sequential"]["batching"] = delta(before, batching(url), phases["sequential"]["seconds"])
    before = batching(url)
    items = plan(args.requests, args.malformed, texts, malformed_requests(limits), rng)
    cpu = (time.process_time(), cpu_seconds(pid))
    phases["concurrent"] = asyncio.run(run_phase(url, items, args.concurrency, max(1.0, deadline - time.monotonic()), args.client))
    phases["concurrent"]["client"] = args.client
    phases["concurrent"]["cores_used"] = cores_used(cpu, pid, phases["concurrent"]["seconds"])
    phases["concurrent"]["batching"] = delta(before, batching(url), phases["concurrent"]["seconds"])
    phases["server_limits"] = limits
    return phases


def versions() -> dict:
    return {**common.versions("fastapi", "uvicorn", "httpx"), "git": common.git_sha()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", help="model directory to serve (omit with --url)")
    parser.add_argument("--url", help="an already running server, loopback only (http://127.0.0.1:PORT)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--malformed", type=float, default=0.05)
    parser.add_argument("--sequential", type=int, default=200, help="requests in the one-at-a-time phase")
    parser.add_argument("--compare-unbatched", action="store_true", help="also run the concurrent phase with batching off")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole run, server start included")
    parser.add_argument("--server-args", default="", help="extra `nertune serve` flags, e.g. '--max-wait-ms 2'")
    parser.add_argument(
        "--client", choices=("httpx", "raw"), default="httpx", help="the concurrent phase's clients: httpx, or lean asyncio streams"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(common.results_dir(__file__) / "load_test.json"))
    parser.add_argument("--note", default="", help="free text stored in the report (e.g. what else ran)")
    args = parser.parse_args()
    if bool(args.url) == bool(args.model_dir):
        parser.error("give a MODEL_DIR (the script starts the server) or --url, not both")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error("--url must be a loopback address: this script never loads a remote server")
    if not (0 <= args.malformed <= 1) or args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1, --malformed in [0, 1]")

    deadline = time.monotonic() + args.time_limit
    rng = random.Random(args.seed)
    texts = sentences()
    report = {
        "command": " ".join(["python -m benchmarks.serve.load_test", *sys.argv[1:]]),
        "note": args.note,
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_description(),
            "cpus": common.cpus(),
            "load_average_at_start": os.getloadavg(),
        },
        "versions": versions(),
        "texts": {
            "source": "CoNLL-2003 test sentences, words joined by spaces",
            "count": len(texts),
            "mean_characters": round(sum(map(len, texts)) / len(texts), 1),
        },
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="nertune-load-") as tmp:
        runs = [("batched", args.server_args.split())]
        if args.compare_unbatched:
            runs.append(("unbatched", args.server_args.split() + ["--max-wait-ms", "0", "--max-batch-texts", "1"]))
        for name, extra in runs:
            if args.url and name == "batched":
                report[name] = measure(args.url, args, texts, rng, deadline, sequential=True)
            elif args.url:
                continue
            else:
                server = ServerProcess(args.model_dir, Path(tmp) / f"{name}.log", "--no-access-log", *extra)
                try:
                    server.wait_ready(max(1.0, deadline - time.monotonic()))
                    report[name] = measure(server.url, args, texts, rng, deadline, (name == "batched"), server.process.pid)
                finally:
                    clean = server.stop()
                report[name]["server_flags"] = extra
                report[name]["server_clean_exit"] = clean
                ok &= report[name]["server_clean_exit"]
            ok &= all(healthy(report[name][phase]) for phase in ("sequential", "concurrent") if phase in report[name])
    b = report["batched"]
    report["summary"] = {
        "sequential_rps": b["sequential"]["requests_per_second"],
        "concurrent_rps": b["concurrent"]["requests_per_second"],
        "speedup_concurrent_vs_sequential": round(b["concurrent"]["valid_per_second"] / b["sequential"]["valid_per_second"], 2),
        "zero_5xx": b["concurrent"]["server_errors_5xx"] == 0,
        "zero_dropped": b["concurrent"]["dropped_connections"] == 0,
    }
    if "unbatched" in report:
        report["summary"]["unbatched_concurrent_rps"] = report["unbatched"]["concurrent"]["requests_per_second"]
        report["summary"]["speedup_batched_vs_unbatched"] = round(
            b["concurrent"]["valid_per_second"] / report["unbatched"]["concurrent"]["valid_per_second"], 2
        )
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["passed"] = ok
    common.write_result(args.out, report)
    sys.stdout.write(json.dumps(report["summary"], indent=2) + "\n")
    print(f"report: {args.out} ({'passed' if ok else 'FAILED'})", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
