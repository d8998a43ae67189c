"""A Ray cluster of several nodes on this machine, for as long as its stdin stays open:

    python -m tests.e2e.ray_cluster --nodes 3 --cpus 1   # prints the address, then waits

Its own process, so that the test session's local Ray instance and the cluster never meet
in one driver; ray.cluster_utils.Cluster starts a raylet (and object store) per node."""

from __future__ import annotations

import argparse
import socket
import sys

from ray.cluster_utils import Cluster

MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="logical CPUs per node")
    parser.add_argument("--object-store-mib", type=int, default=300, help="object store per node")
    args = parser.parse_args()
    node = {"num_cpus": args.cpus, "object_store_memory": args.object_store_mib * MIB}
    # the dashboard (Ray Train watches its workers through its state API) on a free port: the
    # test session's own Ray instance holds the default one
    head = {**node, "include_dashboard": True, "dashboard_port": free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(args.nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.shutdown()


if __name__ == "__main__":
    main()
