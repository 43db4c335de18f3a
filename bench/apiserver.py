"""The apiserver against raw etcd: Apply throughput, Get/List, watch fan-out."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from pathlib import Path

from bench.cluster import Cluster, raw_etcd
from bench.figures import Figure, median, percentile
from dora.api import codec
from dora.api.client import Client, WatchEvent
from dora.api.v1 import object_pb2
from dora.apiserver import registry

SEED = Path(__file__).parent.parent / "tests" / "data" / "seeds" / "001-02-workload-complete.yaml"


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


async def apply_throughput(cluster: Cluster, *, workers: int, seconds: float) -> Figure:
    payload = registry.encode(workload("payload"))
    async with raw_etcd(cluster.etcd_endpoint) as etcd:

        async def raw(worker: int, i: int) -> None:
            key = f"/bench/raw/{worker}/{i}".encode()
            result = await etcd.put_if(key, payload, mod_revision=0)
            assert result.succeeded

        raw_rate, _ = await _rate(workers, seconds, raw)

    async with Client(cluster.target, token=cluster.token) as client:

        async def apply(worker: int, i: int) -> None:
            await client.apply(workload(f"w{worker}-{i}"))

        apply_rate, latencies = await _rate(workers, seconds, apply)
    ratio = apply_rate / raw_rate
    return Figure(
        name="apiserver Apply throughput",
        value=round(apply_rate, 1), unit="applies/s",
        baseline={"what": "raw etcd create transactions, same aetcd client and payload",
                  "value": round(raw_rate, 1), "unit": "txn/s"},
        ratio=round(ratio, 3), target=">= 0.40 of raw etcd", met=ratio >= 0.40,
        notes=f"{workers} concurrent clients for {seconds:.0f}s; Apply p50 "
              f"{median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms",
    )


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


async def watch_fanout(cluster: Cluster, *, watchers: int, writes: int) -> Figure:
    delays: list[float] = []
    async with Client(cluster.target, token=cluster.token) as client:
        _, version = await client.list("Workload")
        committed: dict[str, float] = {}
        ready = asyncio.Event()
        subscribed = 0

        async def watcher() -> None:
            nonlocal subscribed
            stream = client.watch("Workload", resource_version=version, bookmarks=True)
            seen = 0
            first = True
            async for event in stream:
                if first:
                    first = False
                    subscribed += 1
                    if subscribed == watchers:
                        ready.set()
                if event.type == WatchEvent.BOOKMARK:
                    continue
                arrived = time.perf_counter()
                delays.append(arrived - committed[event.object.metadata.name])
                seen += 1
                if seen == writes:
                    break
            await stream.aclose()  # type: ignore[attr-defined]

        tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
        async with asyncio.timeout(60):
            await ready.wait()
        for index in range(writes):
            name = f"fan{index}"
            obj = workload(name)
            committed[name] = time.perf_counter()
            await client.apply(obj)
            await asyncio.sleep(0.05)
        async with asyncio.timeout(120):
            await asyncio.gather(*tasks)
    p99 = percentile(delays, 99)
    return Figure(
        name="watch fan-out delivery delay p99",
        value=round(p99 * 1000, 1), unit="ms",
        baseline={"what": "p50 of the same deliveries", "value": round(median(delays) * 1000, 1),
                  "unit": "ms"},
        target="<= 100 ms p99", met=p99 <= 0.100,
        notes=f"{watchers} watchers x {writes} writes = {len(delays)} deliveries, measured from "
              "the moment the Apply is sent (so it includes the write itself) to each "
              "watcher's receipt, all watchers in one client process",
    )
