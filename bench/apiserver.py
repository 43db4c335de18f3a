"""The apiserver against raw etcd: Apply throughput, Get/List, watch fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.agent_idle import cpu_seconds, rss_mib
from bench.cluster import Cluster, raw_etcd
from bench.figures import Figure, median, percentile
from dora.api import codec
from dora.api.client import Client
from dora.api.v1 import object_pb2
from dora.apiserver import registry
from dora.apiserver.storage import Etcd

ROOT = Path(__file__).parent.parent
SEED = ROOT / "tests" / "data" / "seeds" / "001-02-workload-complete.yaml"


def _template() -> object_pb2.Object:
    [obj] = codec.decode_yaml(SEED.read_text())
    obj.metadata.zone = obj.metadata.workspace = "default"
    del obj.workload.spec.volumes[:]
    return obj


TEMPLATE = _template()


def workload(name: str) -> object_pb2.Object:
    """The seeds' complete Workload (a realistic payload), renamed, in the default scope."""
    obj = object_pb2.Object()
    obj.CopyFrom(TEMPLATE)
    obj.metadata.name = name
    return obj


async def etcd_ranges(cluster: Cluster) -> int:
    """How many range requests etcd has served (its Prometheus metrics)."""

    def scrape() -> int:
        url = f"http://{cluster.etcd_endpoint}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith("grpc_server_handled_total{") and 'grpc_method="Range"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    return await asyncio.to_thread(scrape)


async def _rate(workers: int, seconds: float, op: object) -> tuple[float, list[float]]:
    """Operations per second of ``workers`` loops calling ``op(worker, i)`` for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(worker: int) -> int:
        count = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await op(worker, count)  # type: ignore[operator]
            latencies.append(time.perf_counter() - started)
            count += 1
        return count

    started = time.perf_counter()
    counts = await asyncio.gather(*(loop(w) for w in range(workers)))
    return sum(counts) / (time.perf_counter() - started), latencies


async def apply_throughput(cluster: Cluster, *, workers: int, seconds: float,
                           rounds: int = 3) -> list[Figure]:
    """Apply through the apiserver, raw etcd transactions and the bare proxy, taking
    turns for ``rounds`` rounds of ``seconds / rounds`` each: a slow spell of the
    machine then falls on all three, and the ratio is the median of the rounds'.
    Also the CPU time (``/proc``) each server spends per call: the apiserver per
    Apply, the bare proxy per forwarded Apply, etcd per raw transaction."""
    payload = registry.encode(workload("payload"))
    turn = seconds / rounds
    raw_rates, proxy_rates, apply_rates, latencies = [], [], [], []
    # CPU seconds and calls: (apiserver, its Applies), (proxy, forwards), (etcd, raw txns).
    spent = {"apiserver": [0.0, 0], "proxy": [0.0, 0], "etcd": [0.0, 0]}

    async def costed(name: str, pid: int, op: object) -> tuple[float, list[float]]:
        before = cpu_seconds(pid)
        rate, samples = await _rate(workers, turn, op)
        spent[name][0] += cpu_seconds(pid) - before
        spent[name][1] += len(samples)
        return rate, samples

    async with raw_etcd(cluster.etcd_endpoint) as etcd, proxy(cluster) as (proxy_target,
                                                                            proxy_pid), \
            Client(proxy_target, token=cluster.token) as via_proxy, \
            Client(cluster.target, token=cluster.token) as client:
        for round_ in range(rounds):

            async def raw(worker: int, i: int, round_: int = round_) -> None:
                key = f"/bench/raw/{round_}/{worker}/{i}".encode()
                result = await etcd.put_if(key, payload, mod_revision=0)
                assert result.succeeded

            async def forward(worker: int, i: int, round_: int = round_) -> None:
                await via_proxy.apply(workload(f"p{round_}-{worker}-{i}"))

            async def apply(worker: int, i: int, round_: int = round_) -> None:
                await client.apply(workload(f"w{round_}-{worker}-{i}"))

            raw_rates.append((await costed("etcd", cluster.etcd_pid, raw))[0])
            proxy_rates.append((await costed("proxy", proxy_pid, forward))[0])
            rate, round_latencies = await costed("apiserver", cluster.apiserver_pid, apply)
            apply_rates.append(rate)
            latencies.extend(round_latencies)
    ratios = [a / r for a, r in zip(apply_rates, raw_rates, strict=True)]
    ceilings = [p / r for p, r in zip(proxy_rates, raw_rates, strict=True)]
    ratio, ceiling = median(ratios), median(ceilings)
    per_call = {name: seconds * 1000 / calls if calls else float("nan")
                for name, (seconds, calls) in spent.items()}
    cpu_ratio = per_call["apiserver"] / per_call["proxy"]
    cpu = Figure(
        name="apiserver CPU per Apply",
        value=round(per_call["apiserver"], 3), unit="ms",
        baseline={"what": "bench.proxy's CPU per forwarded Apply, same run",
                  "value": round(per_call["proxy"], 3), "unit": "ms",
                  "etcd": {"what": "etcd's CPU per raw transaction, same run",
                           "value": round(per_call["etcd"], 3), "unit": "ms"}},
        ratio=round(cpu_ratio, 3), target="<= 1.3x the bare proxy's", met=cpu_ratio <= 1.3,
        notes=f"utime + stime from /proc over the same turns as the Apply throughput: "
              f"apiserver {per_call['apiserver']:.3f} ms per Apply (which also feeds its "
              f"watch cache), bare proxy {per_call['proxy']:.3f} ms per Apply, etcd "
              f"{per_call['etcd']:.3f} ms per raw transaction",
    )
    return [Figure(
        name="apiserver Apply throughput",
        value=round(median(apply_rates), 1), unit="applies/s",
        baseline={"what": "raw etcd create transactions, same aetcd client and payload",
                  "value": round(median(raw_rates), 1), "unit": "txn/s",
                  "ceiling": {"what": "bench.proxy: a bare grpc.aio server forwarding each "
                                      "Apply as one etcd transaction (no auth, admission "
                                      "or cache)",
                              "value": round(median(proxy_rates), 1), "unit": "applies/s",
                              "ratio": round(ceiling, 3)}},
        ratio=round(ratio, 3), target=">= 0.40 of raw etcd", met=ratio >= 0.40,
        notes=f"{workers} concurrent clients; {rounds} rounds of raw etcd, the bare proxy "
              f"and the apiserver taking turns ({turn:.1f}s each), medians of the rounds "
              f"(ratios per round: {', '.join(f'{r:.2f}' for r in ratios)}); Apply p50 "
              f"{median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms; "
              f"the bare proxy (bench.proxy, the ceiling of a Python gRPC apiserver on this "
              f"machine) reaches {ceiling:.2f} of raw etcd, the apiserver "
              f"{ratio / ceiling:.2f} of the proxy",
    ), cpu]


@contextlib.asynccontextmanager
async def proxy(cluster: Cluster) -> AsyncIterator[tuple[str, int]]:
    """A ``bench.proxy`` process in front of the cluster's etcd; its gRPC target and pid."""
    with tempfile.TemporaryDirectory(prefix="dora-bench-proxy-") as workdir:
        port_file = Path(workdir) / "port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.proxy", "--etcd-endpoint", cluster.etcd_endpoint,
            "--port-file", str(port_file), cwd=ROOT,
        )
        try:
            async with asyncio.timeout(30):
                while not port_file.exists():
                    if process.returncode is not None:
                        raise RuntimeError(f"bench.proxy exited ({process.returncode})")
                    await asyncio.sleep(0.05)
            yield f"127.0.0.1:{port_file.read_text().strip()}", process.pid
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def get_and_list(cluster: Cluster, *, objects: int, seconds: float,
                       workers: int) -> list[Figure]:
    async with Client(cluster.target, token=cluster.token) as client, \
            raw_etcd(cluster.etcd_endpoint) as etcd:
        names = [f"g{i:05d}" for i in range(objects)]
        for start in range(0, objects, 200):
            await asyncio.gather(*(client.apply(workload(n)) for n in names[start:start + 200]))
        version = (await client.list_page("Workload", limit=1)).resource_version

        async def get(worker: int, i: int) -> None:
            await client.get("Workload", random.choice(names), zone="default",
                             workspace="default", resource_version=version)

        async def raw_get(worker: int, i: int) -> None:
            ref = registry.Ref("Workload", "default", "default", random.choice(names))
            assert await etcd.get(registry.key(ref)) is not None

        raw_rate, raw_latencies = await _rate(workers, seconds, raw_get)
        ranges_before = await etcd_ranges(cluster)
        get_rate, get_latencies = await _rate(workers, seconds, get)
        etcd_reads = await etcd_ranges(cluster) - ranges_before

        prefix = registry.prefix(registry.kinds.get("Workload"))
        list_times, raw_list_times = [], []
        for _ in range(5):
            started = time.perf_counter()
            items, _ = await client.list("Workload", resource_version=version)
            list_times.append(time.perf_counter() - started)
            assert len(items) >= objects
            started = time.perf_counter()
            await etcd.range(prefix)
            raw_list_times.append(time.perf_counter() - started)
    get_ratio = get_rate / raw_rate
    list_ratio = median(raw_list_times) / median(list_times)
    return [
        Figure(
            name="apiserver Get throughput",
            value=round(get_rate, 1), unit="gets/s",
            baseline={"what": "raw etcd range reads of the same keys", "value": round(raw_rate, 1),
                      "unit": "reads/s"},
            ratio=round(get_ratio, 3), target=">= 0.40 of raw etcd reads", met=get_ratio >= 0.40,
            notes=f"{objects} stored workloads, Get with a resourceVersion (from the watch "
                  f"cache); p50 {median(get_latencies) * 1000:.2f} ms, raw p50 "
                  f"{median(raw_latencies) * 1000:.2f} ms; etcd range requests during the Gets: "
                  f"{etcd_reads} (for {int(get_rate * seconds)} Gets)",
        ),
        Figure(
            name="apiserver List of every workload",
            value=round(median(list_times) * 1000, 1), unit="ms",
            baseline={"what": "raw etcd range of the prefix",
                      "value": round(median(raw_list_times) * 1000, 1), "unit": "ms"},
            ratio=round(list_ratio, 3), target=">= 0.40 of raw etcd speed", met=list_ratio >= 0.40,
            notes=f"{objects} workloads with a resourceVersion (from the watch cache, one "
                  "answer), median of 5",
        ),
    ]


# Watch fan-out: one write every PERIOD seconds (10 writes/s to 1,000 watchers is
# 10,000 deliveries a second).
PERIOD = 0.1


async def watch_fanout(cluster: Cluster, *, watchers: int, writes: int,
                       processes: int = 1) -> Figure:
    """Deliveries of each write to ``watchers`` watchers of the Workloads.

    Two rounds of ``writes`` writes each, one every ``PERIOD``, to the same watchers:

    - the figure: each write committed straight to etcd by this process (a create
      transaction of the object as the apiserver stores it, taken from a dry-run
      Apply), so its commit lies between the transaction's send and its answer;
      delays are measured from the send, an upper bound on commit-to-delivery that
      over-states it by at most the transaction's latency (in the notes);
    - in the notes: each write an Apply through the apiserver, measured from the
      moment the Apply is sent, so it includes the write itself.

    The watchers run in ``processes`` client processes of their own
    (``bench.watchers``), so the writer's loop, and the bracket of each commit, are
    not held up by a thousand streams to parse.
    """
    tag = os.urandom(3).hex()  # a second run on the same cluster writes new objects
    warmup = f"fan-{tag}-warmup"
    async with Client(cluster.target, token=cluster.token) as client, \
            raw_etcd(cluster.etcd_endpoint) as etcd:
        _, version = await client.list("Workload")
        shares = [watchers // processes + (i < watchers % processes) for i in range(processes)]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.watchers", "--target", cluster.target,
                "--version", str(version), "--watchers", str(share),
                "--events", str(2 * writes + 1), "--warmup", warmup,
                stdout=subprocess.PIPE, env={**os.environ, "DORA_BENCH_TOKEN": cluster.token},
                limit=2**28, cwd=ROOT,
            )
            for share in shares if share
        ]
        try:
            return await _fan_out(client, etcd, children, tag=tag, watchers=watchers,
                                  writes=writes)
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()


async def _fan_out(client: Client, etcd: Etcd, children: list[asyncio.subprocess.Process], *,
                   tag: str, watchers: int, writes: int) -> Figure:
    warmup = f"fan-{tag}-warmup"
    # A watcher gets the warm-up write whenever its stream opens (it watches from
    # an earlier version): once all have it, every stream is open and idle.
    await client.apply(workload(warmup))
    async with asyncio.timeout(60):
        for child in children:
            assert child.stdout is not None
            line = await child.stdout.readline()
            if line != b"ready\n":
                raise RuntimeError(f"a watcher process failed to start: {line!r}")
    # The objects of the commit round as the apiserver would store them.
    stored: dict[str, tuple[bytes, bytes]] = {}
    for index in range(writes):
        name = f"fan-{tag}-c{index}"
        obj, _ = await client.apply(workload(name), dry_run=True)
        key = registry.key(registry.Ref("Workload", "default", "default", name))
        stored[name] = (key, registry.encode(obj))
    sent: dict[str, float] = {}
    commits: list[float] = []
    start = time.monotonic()
    for index in range(writes):
        await asyncio.sleep(max(0.0, start + index * PERIOD - time.monotonic()))
        name = f"fan-{tag}-a{index}"
        sent[name] = time.monotonic()
        await client.apply(workload(name))
    start = time.monotonic() + PERIOD
    for index, (name, (key, value)) in enumerate(stored.items()):
        await asyncio.sleep(max(0.0, start + index * PERIOD - time.monotonic()))
        sent[name] = time.monotonic()
        result = await etcd.put_if(key, value, mod_revision=0)
        commits.append(time.monotonic() - sent[name])
        assert result.succeeded
    arrivals: list[tuple[str, float]] = []
    async with asyncio.timeout(120):
        for child in children:
            output, _ = await child.communicate()
            if child.returncode:
                raise RuntimeError(f"a watcher process failed ({child.returncode})")
            arrivals.extend(json.loads(output))
    applied = [at - sent[name] for name, at in arrivals if f"-{tag}-a" in name]
    delays = [at - sent[name] for name, at in arrivals if f"-{tag}-c" in name]
    assert len(delays) == len(applied) == watchers * writes, (len(delays), len(applied))
    return delay_figure(
        "watch fan-out delivery delay p99", delays, within=0.100, target="<= 100 ms p99",
        notes=f"{watchers} watchers x {writes} writes (one every {PERIOD * 1000:.0f} ms) = "
              f"{len(delays)} deliveries, the watchers in {len(children)} client "
              f"process{'es' if len(children) > 1 else ''} of their own (bench.watchers); "
              "measured from "
              "the send of the etcd create transaction of each write (this process commits "
              "it straight to etcd, the object as the apiserver stores it) to each watcher's "
              "receipt: the commit lies between that send and the transaction's answer (p50 "
              f"{median(commits) * 1000:.1f} ms, max {max(commits) * 1000:.1f} ms later), so "
              "the figure over-states commit-to-delivery by at most that much. The same "
              f"watchers, {writes} Applies through the apiserver (one every "
              f"{PERIOD * 1000:.0f} ms, or after the last answer), measured from the moment "
              "each Apply is sent (so including the write itself): p50 "
              f"{median(applied) * 1000:.1f} ms, p99 {percentile(applied, 99) * 1000:.1f} ms",
    )


async def watch_under_load(cluster: Cluster, *, watchers: int = 50, writers: int = 20,
                           rate: float = 100.0, writes: int = 500) -> Figure:
    """Delivery to ``watchers`` watchers while ``writers`` clients write ``rate`` Applies a
    second between them (``writes`` in all), each delay from the Apply's send to a
    watcher's receipt; every watcher must get every write."""
    tag = os.urandom(3).hex()
    warmup = f"load-{tag}-warmup"
    async with Client(cluster.target, token=cluster.token) as client:
        _, version = await client.list("Workload")
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.watchers", "--target", cluster.target,
            "--version", str(version), "--watchers", str(watchers),
            "--events", str(writes + 1), "--warmup", warmup,
            stdout=subprocess.PIPE, env={**os.environ, "DORA_BENCH_TOKEN": cluster.token},
            limit=2**28, cwd=ROOT,
        )
        try:
            await client.apply(workload(warmup))
            assert child.stdout is not None
            async with asyncio.timeout(60):
                if await child.stdout.readline() != b"ready\n":
                    raise RuntimeError("the watcher process failed to start")
            sent: dict[str, float] = {}
            period = writers / rate  # each writer's pace
            start = time.monotonic()

            async def writer(index: int) -> None:
                for n in range(index, writes, writers):
                    due = start + (n // writers) * period + index * period / writers
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    name = f"load-{tag}-{n}"
                    sent[name] = time.monotonic()
                    await client.apply(workload(name))

            await asyncio.gather(*(writer(i) for i in range(writers)))
            took = time.monotonic() - start
            async with asyncio.timeout(120):
                output, _ = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    delays = [at - sent[name] for name, at in json.loads(output) if name in sent]
    assert len(delays) == watchers * writes, (len(delays), watchers * writes)
    return delay_figure(
        "watch delivery under write load p99", delays, within=0.250,
        target="<= 250 ms p99 at 100 writes/s",
        notes=f"{watchers} watchers (one client process of their own), {writers} writers "
              f"applying {writes} Workloads at {writes / took:.0f} writes/s (asked {rate:.0f}); "
              f"from each Apply's send to each watcher's receipt; all "
              f"{len(delays)} deliveries arrived",
    )


async def flood_memory(cluster: Cluster, *, rounds: int = 5) -> Figure:
    """The apiserver's resident memory a few seconds after ``rounds`` x 40 refused
    Applies (4 MB and 1 MB, without a token and with a wrong one), against its memory
    idle just before: rejected messages must cost nothing lasting (issue 15)."""
    pid = cluster.apiserver_pid
    async with Client(cluster.target, token=cluster.token) as admin:
        await admin.list("Zone")  # warm: every path of an ordinary call taken
    await asyncio.sleep(0.5)
    idle = rss_mib(pid)
    bodies = [b"\x0a" + os.urandom(16) + b"x" * size for size in (4_000_000, 1_000_000)]
    refused: dict[str, int] = {}
    async with grpc.aio.insecure_channel(
        cluster.target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary("/dora.api.v1.Resources/Apply")

        async def send(body: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
            try:
                await call(body, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                refused[exc.code().name] = refused.get(exc.code().name, 0) + 1

        for _round in range(rounds):
            await asyncio.gather(*(
                send(body, metadata) for body in bodies
                for metadata in ((), (("authorization", "Bearer dora_not_a_token"),))
                for _ in range(10)))
    peak = rss_mib(pid)
    after = peak
    for _ in range(20):  # freed memory goes back within a trim period or two
        await asyncio.sleep(0.5)
        after = rss_mib(pid)
        if after <= idle * 1.2:
            break
    sent = rounds * 40
    return Figure(
        name="apiserver memory after a flood of refused Applies",
        value=round(after, 1), unit="MiB",
        baseline={"what": "the same apiserver idle just before", "value": round(idle, 1),
                  "unit": "MiB"},
        ratio=round(after / idle, 2),
        target="<= 2x idle", met=after <= 2 * idle,
        notes=f"{sent} Applies of 4 MB and 1 MB, half without a token, half with a wrong "
              f"one, all refused ({', '.join(f'{k} {v}' for k, v in sorted(refused.items()))}); "
              f"{peak:.0f} MiB right after",
    )


def delay_figure(name: str, delays: list[float], *, within: float, target: str,
                 notes: str) -> Figure:
    """The p99 of ``delays`` (seconds) in ms, beside their p50; met when p99 <= ``within``."""
    p99 = percentile(delays, 99)
    return Figure(
        name=name, value=round(p99 * 1000, 1), unit="ms",
        baseline={"what": "p50 of the same deliveries", "value": round(median(delays) * 1000, 1),
                  "unit": "ms"},
        target=target, met=p99 <= within, notes=notes,
    )
