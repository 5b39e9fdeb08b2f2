from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupMessage(_message.Message):
    __slots__ = ("group_id", "payload")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    payload: bytes
    def __init__(self, group_id: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class RaftBatch(_message.Message):
    __slots__ = ("from_node", "to_node", "cluster_id", "messages")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    from_node: int
    to_node: int
    cluster_id: str
    messages: _containers.RepeatedCompositeFieldContainer[GroupMessage]
    def __init__(self, from_node: _Optional[int] = ..., to_node: _Optional[int] = ..., cluster_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[GroupMessage, _Mapping]]] = ...) -> None: ...

class RaftAck(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: int
    def __init__(self, batches: _Optional[int] = ...) -> None: ...
