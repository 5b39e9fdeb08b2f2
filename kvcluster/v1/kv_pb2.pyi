from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[Op]
    GET: _ClassVar[Op]
    SET: _ClassVar[Op]
    DELETE: _ClassVar[Op]
    EXISTS: _ClassVar[Op]
    INCRBY: _ClassVar[Op]
    EXPIRE: _ClassVar[Op]
    TTL: _ClassVar[Op]
    CAS: _ClassVar[Op]
    PERSIST: _ClassVar[Op]

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEARIZABLE: _ClassVar[Consistency]
    STALE: _ClassVar[Consistency]

class SetFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SET_FLAG_NONE: _ClassVar[SetFlag]
    NX: _ClassVar[SetFlag]
    XX: _ClassVar[SetFlag]
    KEEPTTL: _ClassVar[SetFlag]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[Status]
    NOT_FOUND: _ClassVar[Status]
    NOT_APPLIED: _ClassVar[Status]
    NOT_LEADER: _ClassVar[Status]
    MOVED: _ClassVar[Status]
    ASK: _ClassVar[Status]
    TRYAGAIN: _ClassVar[Status]
    CLUSTERDOWN: _ClassVar[Status]
    INVALID: _ClassVar[Status]
    WRONGTYPE: _ClassVar[Status]
    TIMEOUT: _ClassVar[Status]
    UNAVAILABLE: _ClassVar[Status]
    INTERNAL: _ClassVar[Status]
OP_UNSPECIFIED: Op
GET: Op
SET: Op
DELETE: Op
EXISTS: Op
INCRBY: Op
EXPIRE: Op
TTL: Op
CAS: Op
PERSIST: Op
LINEARIZABLE: Consistency
STALE: Consistency
SET_FLAG_NONE: SetFlag
NX: SetFlag
XX: SetFlag
KEEPTTL: SetFlag
OK: Status
NOT_FOUND: Status
NOT_APPLIED: Status
NOT_LEADER: Status
MOVED: Status
ASK: Status
TRYAGAIN: Status
CLUSTERDOWN: Status
INVALID: Status
WRONGTYPE: Status
TIMEOUT: Status
UNAVAILABLE: Status
INTERNAL: Status

class Request(_message.Message):
    __slots__ = ("op", "key", "value", "expected", "has_expected", "ttl_ms", "delta", "flags", "consistency", "client_id", "seq", "asking")
    OP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    HAS_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ASKING_FIELD_NUMBER: _ClassVar[int]
    op: Op
    key: bytes
    value: bytes
    expected: bytes
    has_expected: bool
    ttl_ms: int
    delta: int
    flags: int
    consistency: Consistency
    client_id: int
    seq: int
    asking: bool
    def __init__(self, op: _Optional[_Union[Op, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., expected: _Optional[bytes] = ..., has_expected: _Optional[bool] = ..., ttl_ms: _Optional[int] = ..., delta: _Optional[int] = ..., flags: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., client_id: _Optional[int] = ..., seq: _Optional[int] = ..., asking: _Optional[bool] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ("status", "value", "int_value", "error", "slot", "address", "epoch", "leader_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    status: Status
    value: bytes
    int_value: int
    error: str
    slot: int
    address: str
    epoch: int
    leader_id: int
    def __init__(self, status: _Optional[_Union[Status, str]] = ..., value: _Optional[bytes] = ..., int_value: _Optional[int] = ..., error: _Optional[str] = ..., slot: _Optional[int] = ..., address: _Optional[str] = ..., epoch: _Optional[int] = ..., leader_id: _Optional[int] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("requests", "batch_id")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[Request]
    batch_id: int
    def __init__(self, requests: _Optional[_Iterable[_Union[Request, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("responses", "batch_id")
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[Response]
    batch_id: int
    def __init__(self, responses: _Optional[_Iterable[_Union[Response, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...
