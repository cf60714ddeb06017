"""Flower's floor: rounds of empty exchanges, timed in the ServerApp like fedzoo's rounds.

Each round sends ``exchanges`` empty ``query.echo`` messages to every node in turn (the
fedzoo loop sends 1 per round for single-exchange methods, 2 for fzoos/scaffold1) and
records the wall time of the round; ``timings.json`` in ``out-dir`` holds them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


@client.query("echo")
def echo(msg: Message, context: Context) -> Message:
    return Message(RecordDict(), reply_to=msg)


@server.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    n, rounds, exchanges = int(cfg["num-clients"]), int(cfg["rounds"]), int(cfg["exchanges"])
    deadline = time.monotonic() + float(cfg["node-wait-timeout"])
    while len(nodes := sorted(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {n} nodes connected")
        time.sleep(0.5)
    nodes = nodes[:n]

    def exchange(group: str) -> int:
        msgs = [
            Message(RecordDict(), dst_node_id=node, message_type="query.echo", group_id=group)
            for node in nodes
        ]
        return sum(1 for r in grid.send_and_receive(msgs) if not r.has_error())

    exchange("warm-up")  # like fedzoo's query.describe: first contact, not timed
    times = []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        ok = [exchange(str(r)) for _ in range(exchanges)]
        times.append(time.perf_counter() - t0)
        if min(ok) != n:
            raise RuntimeError(f"round {r}: {ok} replies of {n}")
    out = Path(str(cfg["out-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(
        json.dumps({"round_s": times, "clients": n, "exchanges": exchanges})
    )
