from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupStatus(_message.Message):
    __slots__ = ("group_id", "role", "leader_id", "term", "commit_index", "applied_index", "last_index", "voters", "match_index")
    class MatchIndexEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    role: str
    leader_id: int
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    voters: _containers.RepeatedScalarFieldContainer[int]
    match_index: _containers.ScalarMap[int, int]
    def __init__(self, group_id: _Optional[int] = ..., role: _Optional[str] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., voters: _Optional[_Iterable[int]] = ..., match_index: _Optional[_Mapping[int, int]] = ...) -> None: ...

class NodeStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "cluster_id", "address", "groups", "peers")
    class PeersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    cluster_id: str
    address: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupStatus]
    peers: _containers.ScalarMap[int, str]
    def __init__(self, node_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., address: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[GroupStatus, _Mapping]]] = ..., peers: _Optional[_Mapping[int, str]] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("group_id", "to_node")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    to_node: int
    def __init__(self, group_id: _Optional[int] = ..., to_node: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ("ok", "error", "leader_id")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    leader_id: int
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., leader_id: _Optional[int] = ...) -> None: ...

class ClusterSlotsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterSlotsResponse(_message.Message):
    __slots__ = ("slot_map", "epoch")
    SLOT_MAP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    slot_map: bytes
    epoch: int
    def __init__(self, slot_map: _Optional[bytes] = ..., epoch: _Optional[int] = ...) -> None: ...

class CreateClusterRequest(_message.Message):
    __slots__ = ("groups", "replicas")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    groups: int
    replicas: int
    def __init__(self, groups: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class CreateClusterResponse(_message.Message):
    __slots__ = ("ok", "error", "epoch", "leader_id", "leader_address", "slot_map")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SLOT_MAP_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    epoch: int
    leader_id: int
    leader_address: str
    slot_map: bytes
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., epoch: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., slot_map: _Optional[bytes] = ...) -> None: ...
