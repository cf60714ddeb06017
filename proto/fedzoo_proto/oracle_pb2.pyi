from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeReply(_message.Message):
    __slots__ = ("dim", "lower", "upper", "has_budget", "budget", "remaining_budget", "total_queries", "max_batch", "name", "api_version", "server_version")
    DIM_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    HAS_BUDGET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_QUERIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    dim: int
    lower: float
    upper: float
    has_budget: bool
    budget: int
    remaining_budget: int
    total_queries: int
    max_batch: int
    name: str
    api_version: str
    server_version: str
    def __init__(self, dim: _Optional[int] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., has_budget: _Optional[bool] = ..., budget: _Optional[int] = ..., remaining_budget: _Optional[int] = ..., total_queries: _Optional[int] = ..., max_batch: _Optional[int] = ..., name: _Optional[str] = ..., api_version: _Optional[str] = ..., server_version: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("x", "n", "d", "request_id")
    X_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    D_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    x: _containers.RepeatedScalarFieldContainer[float]
    n: int
    d: int
    request_id: str
    def __init__(self, x: _Optional[_Iterable[float]] = ..., n: _Optional[int] = ..., d: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class EvaluateReply(_message.Message):
    __slots__ = ("values", "total_queries", "has_budget", "remaining_budget", "replayed")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_QUERIES_FIELD_NUMBER: _ClassVar[int]
    HAS_BUDGET_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    total_queries: int
    has_budget: bool
    remaining_budget: int
    replayed: bool
    def __init__(self, values: _Optional[_Iterable[float]] = ..., total_queries: _Optional[int] = ..., has_budget: _Optional[bool] = ..., remaining_budget: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...
