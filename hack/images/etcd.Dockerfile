# dora/etcd: the host's Debian etcd (etcd-server/etcd-client 3.4) on the Debian base
# image, for e2e/docker-compose.yaml and deploy/k8s/. hack/etcd-image.sh copies
# /usr/bin/etcd and /usr/bin/etcdctl into the context: no registry and no network
# inside the build. They link only against glibc, which the bookworm base has.
ARG BASE=dora/debian-base:bookworm
FROM ${BASE}
ARG ETCD_VERSION
COPY etcd etcdctl /usr/local/bin/
# The data directory belongs to uid 10001, as in dora/dora, so that the Kubernetes
# StatefulSet can run etcd as non-root.
RUN groupadd --system --gid 10001 etcd \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/etcd --create-home \
    --shell /usr/sbin/nologin etcd \
 && etcd --version >/dev/null
ENV ETCDCTL_API=3
LABEL org.opencontainers.image.title="etcd" \
      org.opencontainers.image.version="${ETCD_VERSION}"
EXPOSE 2379 2380
CMD ["etcd", "--data-dir", "/var/lib/etcd/data"]
