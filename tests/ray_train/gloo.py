"""Two real gloo ranks on this machine, for the tests of what crosses ranks."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def run_two_ranks(body: Callable[[int, str], None], out: str) -> None:
    """`body(rank, out)` in 2 processes joined in one gloo process group; it saves what the
    test checks under `out`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(body, port, out), nprocs=2)


def _rank(rank: int, body: Callable[[int, str], None], port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        body(rank, out)
    finally:
        dist.destroy_process_group()
