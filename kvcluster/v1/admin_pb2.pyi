from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA: _ClassVar[ScanKind]
    DIRTY: _ClassVar[ScanKind]
    SESSIONS: _ClassVar[ScanKind]
    SIZES: _ClassVar[ScanKind]
DATA: ScanKind
DIRTY: ScanKind
SESSIONS: ScanKind
SIZES: ScanKind

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

class ProposeRequest(_message.Message):
    __slots__ = ("group_id", "commands")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    commands: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, group_id: _Optional[int] = ..., commands: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ProposeOutcome(_message.Message):
    __slots__ = ("ok", "error", "int_value", "value")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    int_value: int
    value: bytes
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., int_value: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("results", "error", "not_leader", "leader_id", "leader_address", "unknown", "epoch")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ProposeOutcome]
    error: str
    not_leader: bool
    leader_id: int
    leader_address: str
    unknown: bool
    epoch: int
    def __init__(self, results: _Optional[_Iterable[_Union[ProposeOutcome, _Mapping]]] = ..., error: _Optional[str] = ..., not_leader: _Optional[bool] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., unknown: _Optional[bool] = ..., epoch: _Optional[int] = ...) -> None: ...

class MetaStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetaStateResponse(_message.Message):
    __slots__ = ("state", "not_leader", "leader_id", "leader_address", "error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    state: bytes
    not_leader: bool
    leader_id: int
    leader_address: str
    error: str
    def __init__(self, state: _Optional[bytes] = ..., not_leader: _Optional[bool] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ScanSlotsRequest(_message.Message):
    __slots__ = ("group_id", "slots", "kind", "start_slot", "start_after", "has_start_after", "limit")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_SLOT_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    HAS_START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    slots: _containers.RepeatedScalarFieldContainer[int]
    kind: ScanKind
    start_slot: int
    start_after: bytes
    has_start_after: bool
    limit: int
    def __init__(self, group_id: _Optional[int] = ..., slots: _Optional[_Iterable[int]] = ..., kind: _Optional[_Union[ScanKind, str]] = ..., start_slot: _Optional[int] = ..., start_after: _Optional[bytes] = ..., has_start_after: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ScanSlotsResponse(_message.Message):
    __slots__ = ("entry_slots", "keys", "values", "present", "seqs", "records", "keys_totals", "bytes_totals", "done", "next_slot", "next_after", "has_next_after", "clock", "not_leader", "leader_id", "leader_address", "error")
    ENTRY_SLOTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_TOTALS_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTALS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_SLOT_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    HAS_NEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    NOT_LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    entry_slots: _containers.RepeatedScalarFieldContainer[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    present: _containers.RepeatedScalarFieldContainer[bool]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    records: _containers.RepeatedScalarFieldContainer[bytes]
    keys_totals: _containers.RepeatedScalarFieldContainer[int]
    bytes_totals: _containers.RepeatedScalarFieldContainer[int]
    done: bool
    next_slot: int
    next_after: bytes
    has_next_after: bool
    clock: int
    not_leader: bool
    leader_id: int
    leader_address: str
    error: str
    def __init__(self, entry_slots: _Optional[_Iterable[int]] = ..., keys: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[bytes]] = ..., present: _Optional[_Iterable[bool]] = ..., seqs: _Optional[_Iterable[int]] = ..., records: _Optional[_Iterable[bytes]] = ..., keys_totals: _Optional[_Iterable[int]] = ..., bytes_totals: _Optional[_Iterable[int]] = ..., done: _Optional[bool] = ..., next_slot: _Optional[int] = ..., next_after: _Optional[bytes] = ..., has_next_after: _Optional[bool] = ..., clock: _Optional[int] = ..., not_leader: _Optional[bool] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
