"""Every metric family Dora exports, declared once: names, help texts and labels.

Components update them; ``endpoint`` serves them. Labels stay low-cardinality (a
method, a controller, a kind, a phase; never an object's name). Families whose
value is a reading of the daemon's state (queue depths, leadership, containers
by phase) are gauges the component sets where that state changes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# apiserver
REQUESTS = Counter(
    "dora_apiserver_requests_total", "gRPC requests handled, by method and status code.",
    ["method", "code"])
REQUEST_SECONDS = Histogram(
    "dora_apiserver_request_seconds",
    "Time to answer a unary request (a stream: until it ends), by method.", ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60))
WATCHES = Gauge("dora_apiserver_watches", "Watch streams open now, by kind.", ["kind"])
ETCD_SECONDS = Histogram(
    "dora_etcd_request_seconds", "Time of a call to etcd, by method (Txn, Range, ...).",
    ["method"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))

# controllers
RECONCILES = Counter(
    "dora_controller_reconciles_total",
    "Reconciles, by controller and outcome (success, requeue, wait, error, conflict, "
    "terminal).",
    ["controller", "result"])
RECONCILE_SECONDS = Histogram(
    "dora_controller_reconcile_seconds", "Time of one reconcile, by controller.",
    ["controller"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30))
QUEUE_ADDS = Counter(
    "dora_controller_queue_adds_total", "Keys added to a controller's work queue.",
    ["controller"])
QUEUE_RETRIES = Counter(
    "dora_controller_queue_retries_total",
    "Keys put back with backoff after a failed reconcile.", ["controller"])
QUEUE_DEPTH = Gauge(
    "dora_controller_queue_depth", "Keys waiting in a controller's work queue.", ["controller"])
LEADER = Gauge(
    "dora_controller_leader", "1 while this process leads its zone's controllers, else 0.")
SCHEDULER_BINDS = Counter(
    "dora_scheduler_binds_total", "Containers bound to a node by the scheduler.")
SCHEDULER_UNSCHEDULABLE = Counter(
    "dora_scheduler_unschedulable_total",
    "Times a container was found to fit no node (it stays Pending and is looked at again).")

# agent
AGENT_CONTAINERS = Gauge(
    "dora_agent_containers", "This node's containers, by phase.", ["phase"])
DOCKER_SECONDS = Histogram(
    "dora_agent_docker_seconds", "Time of a call to the Docker engine, by call.", ["call"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60))
GPU_UTILIZATION = Gauge(
    "dora_agent_gpu_utilization_ratio", "GPU busy time over the last sample (0 to 1).",
    ["index", "uuid"])
