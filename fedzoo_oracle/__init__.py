"""The standalone black-box oracle service over gRPC (``proto/oracle.proto``).

* :class:`RemoteOracle` (:mod:`fedzoo_oracle.client`): an objective whose queries go to
  an oracle server (what a SuperNode uses for node config ``oracle``; usable from any
  Python code as ``from fedzoo_oracle import RemoteOracle``);
* :mod:`fedzoo_oracle.server`: the server (``fedzoo oracle serve``);
* :mod:`fedzoo_oracle.cli`: its command line.

``import fedzoo_oracle`` loads nothing heavy; grpc is imported when a name is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RemoteOracle"]


def __getattr__(name: str) -> Any:
    if name == "RemoteOracle":
        from fedzoo_oracle.client import RemoteOracle

        return RemoteOracle
    raise AttributeError(f"module 'fedzoo_oracle' has no attribute {name!r}")
