"""An in-process Flower Grid: the ServerApp loop against ClientApps, no Ray, no sockets.

Each node has its own :class:`flwr.app.Context` (node config, persistent state, the run
config); :meth:`InProcessGrid.send_and_receive` serialises every message content to
protobuf bytes and back (what the wire does), calls the ClientApp, turns an exception into
an error reply as Flower's runtime does, and lets a test tamper with replies.
"""

from __future__ import annotations

import contextlib
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict  # noqa: E0611
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

CLIENT_APP_RAISED_EXCEPTION = 0
SERVER_NODE_ID = 1

# (message type, partition id, reply) -> reply (or None to drop it)
Tamper = Callable[[str, int, Message], Message | None]


def wire(content: RecordDict) -> RecordDict:
    """Content after a trip over the wire (protobuf bytes and back)."""
    data = recorddict_to_proto(content).SerializeToString()
    return recorddict_from_proto(ProtoRecordDict.FromString(data))


@contextlib.contextmanager
def task_identity(run_id: int = 1) -> Iterator[None]:
    """The identity a ServerApp process has (needed to build outgoing Messages)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SERVER_NODE_ID, 1
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


class InProcessGrid(Grid):
    """Nodes ``node_ids[i]`` with node config ``node_configs[i]`` running ``client_app``."""

    fedzoo_simulation = True

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: list[dict[str, Any]],
        run_config: Mapping[str, Any],
        *,
        node_ids: list[int] | None = None,
        tamper: Tamper | None = None,
        run_id: int = 1,
    ) -> None:
        node_ids = node_ids or [1000 + 7 * i for i in range(len(node_configs))]
        self.client_app = client_app
        self.contexts = {
            node: Context(
                run_id=run_id,
                node_id=node,
                node_config=dict(cfg),
                state=RecordDict(),
                run_config=dict(run_config),
            )
            for node, cfg in zip(node_ids, node_configs)
        }
        self.tamper = tamper
        self.sent: list[Message] = []
        self.calls: dict[str, int] = {}

    # -- nodes that come and go (a SuperNode that dies or restarts) --------------------
    def remove_node(self, node: int) -> None:
        """The node disappears: no longer listed, messages to it get no reply."""
        self.contexts.pop(node, None)

    def add_node(self, node: int, node_config: Mapping[str, Any], run_config: Mapping[str, Any]) -> None:
        """A node connects with a fresh Context (as a restarted SuperNode does)."""
        self.contexts[node] = Context(
            run_id=1, node_id=node, node_config=dict(node_config), state=RecordDict(),
            run_config=dict(run_config),
        )

    # -- Grid API ----------------------------------------------------------------------
    def set_run(self, run: Any) -> None:  # pragma: no cover - not used
        pass

    @property
    def run(self) -> Any:  # pragma: no cover - not used
        raise NotImplementedError

    def create_message(
        self, content, message_type, dst_node_id, group_id, ttl=None
    ):  # pragma: no cover
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(reversed(self.contexts))

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            self.sent.append(msg)
            mtype = msg.metadata.message_type
            self.calls[mtype] = self.calls.get(mtype, 0) + 1
            context = self.contexts.get(msg.metadata.dst_node_id)
            if context is None:  # a node that went away answers nothing
                continue
            inbound = Message(metadata=msg.metadata, content=wire(msg.content))
            try:
                reply = self.client_app(inbound, context)
            except Exception as err:  # what the Flower runtime does with a raising ClientApp
                reason = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
                reply = Message(
                    Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=inbound
                )
            if reply.has_content():
                reply = Message(metadata=reply.metadata, content=wire(reply.content))
            if self.tamper is not None:
                pid = context.node_config.get("partition-id", -1)
                reply = self.tamper(mtype, pid, reply)
            if reply is not None:
                replies.append(reply)
        return replies
