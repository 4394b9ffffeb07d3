"""Messages whose size only the sender knows cross process boundaries intact, in order."""

from __future__ import annotations

import traceback

import pytest
import torch
from test_distributed_transport import PROCESS_TIMEOUT_S, _join_job, run_processes

from innet.core.transport import ANY, InProcessTransport
from innet.distributed import DistributedTransport, shutdown

pytestmark = pytest.mark.distributed

# rank 0 runs a and c, rank 1 runs b: a->b has a size known only when sent, sandwiched
# between fixed-size messages on the same pair of ranks, so matching must stay in order
SCHEDULE = [
    ("a", "b", "dispatch", "tokens", (ANY, 3)),
    ("c", "b", "dispatch", "tokens", (2, 3)),
    ("b", "a", "combine", "tokens", (ANY, 3)),
    ("b", "c", "combine", "tokens", (2, 3)),
]
ROWS = {0: 5, 1: 0, 2: 7}  # per step: how many tokens a sends (0 too)


def _worker(rank: int, world_size: int, port: int, results) -> None:  # noqa: ANN001
    try:
        context = _join_job(rank, world_size, port, PROCESS_TIMEOUT_S)
        transport = DistributedTransport({"a": 0, "c": 0, "b": 1}, rank, world_size, "cpu")
        received = []
        for step, rows in ROWS.items():
            transport.expect(SCHEDULE)
            if rank == 0:
                transport.send(torch.full((rows, 3), float(step)), src="a", dst="b",
                               phase="dispatch", payload="tokens")  # fmt: skip
                transport.send(torch.ones(2, 3), src="c", dst="b", phase="dispatch",
                               payload="tokens")  # fmt: skip
                back = transport.recv(src="b", dst="a", phase="combine", payload="tokens",
                                      shape=(ANY, 3))  # fmt: skip
                transport.recv(src="b", dst="c", phase="combine", payload="tokens", shape=(2, 3))
                received.append(back.tolist())
            else:
                tokens = transport.recv(src="a", dst="b", phase="dispatch", payload="tokens",
                                        shape=(ANY, 3))  # fmt: skip
                other = transport.recv(src="c", dst="b", phase="dispatch", payload="tokens",
                                       shape=(2, 3))  # fmt: skip
                transport.send(tokens * 2, src="b", dst="a", phase="combine", payload="tokens")
                transport.send(other, src="b", dst="c", phase="combine", payload="tokens")
                received.append(tokens.tolist())
            transport.flush()
        results.put((rank, {"received": received, "bytes": transport.bytes_sent_cross_rank}))
        shutdown(context, wait=True)
    except BaseException:  # noqa: BLE001 - sent to the test process
        results.put((rank, traceback.format_exc()))


def test_sizes_known_only_when_sent_cross_ranks_intact():
    outcome = run_processes(_worker, world_size=2, expected_results=2)
    expected = [[[float(step)] * 3] * rows for step, rows in ROWS.items()]
    assert outcome[1]["received"] == expected
    assert outcome[0]["received"] == [[[2.0 * v for v in row] for row in rows] for rows in expected]
    data = sum(ROWS.values()) * 3 * 4 + len(ROWS) * 2 * 3 * 4  # the shapes sent ahead not counted
    assert outcome[0]["bytes"] == outcome[1]["bytes"] == data


def test_in_process_transport_takes_any_size_where_announced():
    transport = InProcessTransport()
    transport.send(torch.zeros(4, 3), src="a", dst="b", phase="dispatch", payload="tokens")
    got = transport.recv(src="a", dst="b", phase="dispatch", payload="tokens", shape=(ANY, 3))
    assert got.shape == (4, 3)
    transport.send(torch.zeros(4, 2), src="a", dst="b", phase="dispatch", payload="tokens")
    with pytest.raises(RuntimeError, match="expected"):
        transport.recv(src="a", dst="b", phase="dispatch", payload="tokens", shape=(ANY, 3))
