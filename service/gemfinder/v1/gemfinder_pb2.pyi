import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_TGI: _ClassVar[Backend]
    BACKEND_OPENAI: _ClassVar[Backend]
    BACKEND_OPENAI_COMPLETIONS: _ClassVar[Backend]

class SystemPromptPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYSTEM_PROMPT_POLICY_UNSPECIFIED: _ClassVar[SystemPromptPolicy]
    SYSTEM_PROMPT_POLICY_NONE: _ClassVar[SystemPromptPolicy]
    SYSTEM_PROMPT_POLICY_SYSTEM: _ClassVar[SystemPromptPolicy]

class SearchState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_STATE_UNSPECIFIED: _ClassVar[SearchState]
    SEARCH_STATE_PENDING: _ClassVar[SearchState]
    SEARCH_STATE_RUNNING: _ClassVar[SearchState]
    SEARCH_STATE_SUCCEEDED: _ClassVar[SearchState]
    SEARCH_STATE_FAILED: _ClassVar[SearchState]
    SEARCH_STATE_CANCELLED: _ClassVar[SearchState]

class GemVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GEM_VERDICT_UNSPECIFIED: _ClassVar[GemVerdict]
    GEM_VERDICT_HIDDEN_GEM: _ClassVar[GemVerdict]
    GEM_VERDICT_NOT_A_GEM: _ClassVar[GemVerdict]
    GEM_VERDICT_UNDETERMINED: _ClassVar[GemVerdict]
    GEM_VERDICT_NO_POPULARITY: _ClassVar[GemVerdict]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_SNAPSHOT: _ClassVar[EventType]
    EVENT_TYPE_ROUND_STARTED: _ClassVar[EventType]
    EVENT_TYPE_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_ROUND_FINISHED: _ClassVar[EventType]
    EVENT_TYPE_FINISHED: _ClassVar[EventType]
BACKEND_UNSPECIFIED: Backend
BACKEND_TGI: Backend
BACKEND_OPENAI: Backend
BACKEND_OPENAI_COMPLETIONS: Backend
SYSTEM_PROMPT_POLICY_UNSPECIFIED: SystemPromptPolicy
SYSTEM_PROMPT_POLICY_NONE: SystemPromptPolicy
SYSTEM_PROMPT_POLICY_SYSTEM: SystemPromptPolicy
SEARCH_STATE_UNSPECIFIED: SearchState
SEARCH_STATE_PENDING: SearchState
SEARCH_STATE_RUNNING: SearchState
SEARCH_STATE_SUCCEEDED: SearchState
SEARCH_STATE_FAILED: SearchState
SEARCH_STATE_CANCELLED: SearchState
GEM_VERDICT_UNSPECIFIED: GemVerdict
GEM_VERDICT_HIDDEN_GEM: GemVerdict
GEM_VERDICT_NOT_A_GEM: GemVerdict
GEM_VERDICT_UNDETERMINED: GemVerdict
GEM_VERDICT_NO_POPULARITY: GemVerdict
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_SNAPSHOT: EventType
EVENT_TYPE_ROUND_STARTED: EventType
EVENT_TYPE_PROGRESS: EventType
EVENT_TYPE_ROUND_FINISHED: EventType
EVENT_TYPE_FINISHED: EventType

class Candidate(_message.Message):
    __slots__ = ("model_id", "endpoint", "backend", "adapter_id", "downloads", "official", "prior_score")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    OFFICIAL_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SCORE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    endpoint: str
    backend: Backend
    adapter_id: str
    downloads: float
    official: bool
    prior_score: float
    def __init__(self, model_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., backend: _Optional[_Union[Backend, str]] = ..., adapter_id: _Optional[str] = ..., downloads: _Optional[float] = ..., official: _Optional[bool] = ..., prior_score: _Optional[float] = ...) -> None: ...

class QueryItem(_message.Message):
    __slots__ = ("id", "task", "fields_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    task: str
    fields_json: str
    def __init__(self, id: _Optional[str] = ..., task: _Optional[str] = ..., fields_json: _Optional[str] = ...) -> None: ...

class InlineQuerySet(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[QueryItem]
    def __init__(self, items: _Optional[_Iterable[_Union[QueryItem, _Mapping]]] = ...) -> None: ...

class QuerySet(_message.Message):
    __slots__ = ("name", "inline", "lm_eval")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    LM_EVAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    inline: InlineQuerySet
    lm_eval: LmEvalQuerySet
    def __init__(self, name: _Optional[str] = ..., inline: _Optional[_Union[InlineQuerySet, _Mapping]] = ..., lm_eval: _Optional[_Union[LmEvalQuerySet, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("total", "per_model")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PER_MODEL_FIELD_NUMBER: _ClassVar[int]
    total: int
    per_model: int
    def __init__(self, total: _Optional[int] = ..., per_model: _Optional[int] = ...) -> None: ...

class SearchSpec(_message.Message):
    __slots__ = ("candidates", "query_set", "budget", "algorithm", "params", "seed", "system_prompt", "gem_check_share", "prior_strength", "allow_unreachable_endpoints", "task_weights", "parent_search_id", "incumbents", "epsilon", "delta", "gpu_seconds")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TaskWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    QUERY_SET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    GEM_CHECK_SHARE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNREACHABLE_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TASK_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARENT_SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    INCUMBENTS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    query_set: QuerySet
    budget: Budget
    algorithm: str
    params: _containers.ScalarMap[str, float]
    seed: int
    system_prompt: SystemPromptPolicy
    gem_check_share: float
    prior_strength: float
    allow_unreachable_endpoints: bool
    task_weights: _containers.ScalarMap[str, float]
    parent_search_id: str
    incumbents: int
    epsilon: float
    delta: float
    gpu_seconds: float
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., query_set: _Optional[_Union[QuerySet, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., algorithm: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ..., seed: _Optional[int] = ..., system_prompt: _Optional[_Union[SystemPromptPolicy, str]] = ..., gem_check_share: _Optional[float] = ..., prior_strength: _Optional[float] = ..., allow_unreachable_endpoints: _Optional[bool] = ..., task_weights: _Optional[_Mapping[str, float]] = ..., parent_search_id: _Optional[str] = ..., incumbents: _Optional[int] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., gpu_seconds: _Optional[float] = ...) -> None: ...

class ModelEstimate(_message.Message):
    __slots__ = ("model_id", "rank", "accuracy", "lower", "upper", "items_seen", "successes", "eliminated_in_round", "downloads", "official")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SEEN_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    ELIMINATED_IN_ROUND_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    OFFICIAL_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    rank: int
    accuracy: float
    lower: float
    upper: float
    items_seen: int
    successes: int
    eliminated_in_round: int
    downloads: float
    official: bool
    def __init__(self, model_id: _Optional[str] = ..., rank: _Optional[int] = ..., accuracy: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., items_seen: _Optional[int] = ..., successes: _Optional[int] = ..., eliminated_in_round: _Optional[int] = ..., downloads: _Optional[float] = ..., official: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("budget", "spent", "failed", "skipped", "cached", "round", "total_rounds", "survivors", "leader_model_id", "leader_accuracy", "elapsed", "certificate", "gpu_seconds", "gpu_seconds_cap")
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    LEADER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_CAP_FIELD_NUMBER: _ClassVar[int]
    budget: int
    spent: int
    failed: int
    skipped: int
    cached: int
    round: int
    total_rounds: int
    survivors: int
    leader_model_id: str
    leader_accuracy: float
    elapsed: _duration_pb2.Duration
    certificate: Certificate
    gpu_seconds: float
    gpu_seconds_cap: float
    def __init__(self, budget: _Optional[int] = ..., spent: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., cached: _Optional[int] = ..., round: _Optional[int] = ..., total_rounds: _Optional[int] = ..., survivors: _Optional[int] = ..., leader_model_id: _Optional[str] = ..., leader_accuracy: _Optional[float] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ..., gpu_seconds: _Optional[float] = ..., gpu_seconds_cap: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("recommended_model_id", "ranking", "queries_spent", "queries_failed", "queries_cached", "exhaustive_queries", "elapsed", "winner", "most_popular", "hidden_gem", "gem_verdict", "gem_evidence", "gem_check_queries", "per_task", "overall", "incremental", "certificate", "serving_cost")
    RECOMMENDED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    QUERIES_SPENT_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FAILED_FIELD_NUMBER: _ClassVar[int]
    QUERIES_CACHED_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTIVE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    MOST_POPULAR_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_GEM_FIELD_NUMBER: _ClassVar[int]
    GEM_VERDICT_FIELD_NUMBER: _ClassVar[int]
    GEM_EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    GEM_CHECK_QUERIES_FIELD_NUMBER: _ClassVar[int]
    PER_TASK_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SERVING_COST_FIELD_NUMBER: _ClassVar[int]
    recommended_model_id: str
    ranking: _containers.RepeatedCompositeFieldContainer[ModelEstimate]
    queries_spent: int
    queries_failed: int
    queries_cached: int
    exhaustive_queries: int
    elapsed: _duration_pb2.Duration
    winner: ModelEstimate
    most_popular: ModelEstimate
    hidden_gem: bool
    gem_verdict: GemVerdict
    gem_evidence: _containers.RepeatedCompositeFieldContainer[PairedComparison]
    gem_check_queries: int
    per_task: _containers.RepeatedCompositeFieldContainer[TaskResult]
    overall: _containers.RepeatedCompositeFieldContainer[ModelEstimate]
    incremental: IncrementalOutcome
    certificate: Certificate
    serving_cost: ServingCost
    def __init__(self, recommended_model_id: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[ModelEstimate, _Mapping]]] = ..., queries_spent: _Optional[int] = ..., queries_failed: _Optional[int] = ..., queries_cached: _Optional[int] = ..., exhaustive_queries: _Optional[int] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., winner: _Optional[_Union[ModelEstimate, _Mapping]] = ..., most_popular: _Optional[_Union[ModelEstimate, _Mapping]] = ..., hidden_gem: _Optional[bool] = ..., gem_verdict: _Optional[_Union[GemVerdict, str]] = ..., gem_evidence: _Optional[_Iterable[_Union[PairedComparison, _Mapping]]] = ..., gem_check_queries: _Optional[int] = ..., per_task: _Optional[_Iterable[_Union[TaskResult, _Mapping]]] = ..., overall: _Optional[_Iterable[_Union[ModelEstimate, _Mapping]]] = ..., incremental: _Optional[_Union[IncrementalOutcome, _Mapping]] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ..., serving_cost: _Optional[_Union[ServingCost, _Mapping]] = ...) -> None: ...

class PairedComparison(_message.Message):
    __slots__ = ("model_id", "shared_items", "winner_only_correct", "other_only_correct", "p_value")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    WINNER_ONLY_CORRECT_FIELD_NUMBER: _ClassVar[int]
    OTHER_ONLY_CORRECT_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    shared_items: int
    winner_only_correct: int
    other_only_correct: int
    p_value: float
    def __init__(self, model_id: _Optional[str] = ..., shared_items: _Optional[int] = ..., winner_only_correct: _Optional[int] = ..., other_only_correct: _Optional[int] = ..., p_value: _Optional[float] = ...) -> None: ...

class Search(_message.Message):
    __slots__ = ("search_id", "request_id", "state", "algorithm", "n_candidates", "n_items", "progress", "result", "error", "create_time", "update_time", "parent_search_id")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    N_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    N_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PARENT_SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    request_id: str
    state: SearchState
    algorithm: str
    n_candidates: int
    n_items: int
    progress: Progress
    result: SearchResult
    error: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    parent_search_id: str
    def __init__(self, search_id: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[SearchState, str]] = ..., algorithm: _Optional[str] = ..., n_candidates: _Optional[int] = ..., n_items: _Optional[int] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[SearchResult, _Mapping]] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parent_search_id: _Optional[str] = ...) -> None: ...

class SelectBestModelRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: SearchSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[SearchSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SelectBestModelResponse(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: Search
    def __init__(self, search: _Optional[_Union[Search, _Mapping]] = ...) -> None: ...

class StartSearchRequest(_message.Message):
    __slots__ = ("spec", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: SearchSpec
    request_id: str
    def __init__(self, spec: _Optional[_Union[SearchSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartSearchResponse(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: Search
    def __init__(self, search: _Optional[_Union[Search, _Mapping]] = ...) -> None: ...

class GetSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class GetSearchResponse(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: Search
    def __init__(self, search: _Optional[_Union[Search, _Mapping]] = ...) -> None: ...

class WatchSearchRequest(_message.Message):
    __slots__ = ("search_id", "after_sequence")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    after_sequence: int
    def __init__(self, search_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchSearchResponse(_message.Message):
    __slots__ = ("type", "progress", "state", "search", "sequence")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    progress: Progress
    state: SearchState
    search: Search
    sequence: int
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., state: _Optional[_Union[SearchState, str]] = ..., search: _Optional[_Union[Search, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class CancelSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class CancelSearchResponse(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: Search
    def __init__(self, search: _Optional[_Union[Search, _Mapping]] = ...) -> None: ...

class ListSearchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "request_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: SearchState
    request_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[SearchState, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListSearchesResponse(_message.Message):
    __slots__ = ("searches", "next_page_token")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    searches: _containers.RepeatedCompositeFieldContainer[Search]
    next_page_token: str
    def __init__(self, searches: _Optional[_Iterable[_Union[Search, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task", "weight", "items", "estimates")
    TASK_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    task: str
    weight: float
    items: int
    estimates: _containers.RepeatedCompositeFieldContainer[ModelEstimate]
    def __init__(self, task: _Optional[str] = ..., weight: _Optional[float] = ..., items: _Optional[int] = ..., estimates: _Optional[_Iterable[_Union[ModelEstimate, _Mapping]]] = ...) -> None: ...

class IncrementalOutcome(_message.Message):
    __slots__ = ("parent_search_id", "parent_winner_model_id", "winner_changed", "incumbents", "newcomers", "removed", "left_out")
    PARENT_SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_WINNER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WINNER_CHANGED_FIELD_NUMBER: _ClassVar[int]
    INCUMBENTS_FIELD_NUMBER: _ClassVar[int]
    NEWCOMERS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    parent_search_id: str
    parent_winner_model_id: str
    winner_changed: bool
    incumbents: _containers.RepeatedScalarFieldContainer[str]
    newcomers: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    left_out: int
    def __init__(self, parent_search_id: _Optional[str] = ..., parent_winner_model_id: _Optional[str] = ..., winner_changed: _Optional[bool] = ..., incumbents: _Optional[_Iterable[str]] = ..., newcomers: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., left_out: _Optional[int] = ...) -> None: ...

class LmEvalQuerySet(_message.Message):
    __slots__ = ("task", "num_fewshot", "limit", "seed", "metric", "filter", "fewshot_as_multiturn")
    TASK_FIELD_NUMBER: _ClassVar[int]
    NUM_FEWSHOT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FEWSHOT_AS_MULTITURN_FIELD_NUMBER: _ClassVar[int]
    task: str
    num_fewshot: int
    limit: int
    seed: int
    metric: str
    filter: str
    fewshot_as_multiturn: bool
    def __init__(self, task: _Optional[str] = ..., num_fewshot: _Optional[int] = ..., limit: _Optional[int] = ..., seed: _Optional[int] = ..., metric: _Optional[str] = ..., filter: _Optional[str] = ..., fewshot_as_multiturn: _Optional[bool] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("epsilon_reached", "delta", "epsilon", "certified")
    EPSILON_REACHED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_FIELD_NUMBER: _ClassVar[int]
    epsilon_reached: float
    delta: float
    epsilon: float
    certified: bool
    def __init__(self, epsilon_reached: _Optional[float] = ..., delta: _Optional[float] = ..., epsilon: _Optional[float] = ..., certified: _Optional[bool] = ...) -> None: ...

class ServingCost(_message.Message):
    __slots__ = ("gpu_seconds", "load_gpu_seconds", "queries", "model_loads", "adapter_loads", "swaps", "wall", "endpoints", "gpu_seconds_cap", "stopped_by_cap")
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOADS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_LOADS_FIELD_NUMBER: _ClassVar[int]
    SWAPS_FIELD_NUMBER: _ClassVar[int]
    WALL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_CAP_FIELD_NUMBER: _ClassVar[int]
    STOPPED_BY_CAP_FIELD_NUMBER: _ClassVar[int]
    gpu_seconds: float
    load_gpu_seconds: float
    queries: int
    model_loads: int
    adapter_loads: int
    swaps: int
    wall: _duration_pb2.Duration
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointServingCost]
    gpu_seconds_cap: float
    stopped_by_cap: bool
    def __init__(self, gpu_seconds: _Optional[float] = ..., load_gpu_seconds: _Optional[float] = ..., queries: _Optional[int] = ..., model_loads: _Optional[int] = ..., adapter_loads: _Optional[int] = ..., swaps: _Optional[int] = ..., wall: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointServingCost, _Mapping]]] = ..., gpu_seconds_cap: _Optional[float] = ..., stopped_by_cap: _Optional[bool] = ...) -> None: ...

class EndpointServingCost(_message.Message):
    __slots__ = ("url", "gpu_seconds", "queries", "query_s", "query_s_measured", "measured_queries")
    URL_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    QUERY_S_FIELD_NUMBER: _ClassVar[int]
    QUERY_S_MEASURED_FIELD_NUMBER: _ClassVar[int]
    MEASURED_QUERIES_FIELD_NUMBER: _ClassVar[int]
    url: str
    gpu_seconds: float
    queries: int
    query_s: float
    query_s_measured: bool
    measured_queries: int
    def __init__(self, url: _Optional[str] = ..., gpu_seconds: _Optional[float] = ..., queries: _Optional[int] = ..., query_s: _Optional[float] = ..., query_s_measured: _Optional[bool] = ..., measured_queries: _Optional[int] = ...) -> None: ...

class PlanSearchRequest(_message.Message):
    __slots__ = ("spec", "trials")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    spec: SearchSpec
    trials: int
    def __init__(self, spec: _Optional[_Union[SearchSpec, _Mapping]] = ..., trials: _Optional[int] = ...) -> None: ...

class Spread(_message.Message):
    __slots__ = ("mean", "p10", "p90")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    P10_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    mean: float
    p10: float
    p90: float
    def __init__(self, mean: _Optional[float] = ..., p10: _Optional[float] = ..., p90: _Optional[float] = ...) -> None: ...

class SearchPlan(_message.Message):
    __slots__ = ("algorithm", "budget", "models", "items", "trials", "quality_trials", "queries", "prompt_tokens", "generated_tokens", "token_source", "model_loads", "adapter_loads", "swaps", "gpu_seconds", "load_gpu_seconds", "wall_seconds", "loss_mean", "loss_p90", "p_best", "accounted", "planned_budget", "gpu_seconds_cap", "capped", "cached")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_TRIALS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_LOADS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_LOADS_FIELD_NUMBER: _ClassVar[int]
    SWAPS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOSS_MEAN_FIELD_NUMBER: _ClassVar[int]
    LOSS_P90_FIELD_NUMBER: _ClassVar[int]
    P_BEST_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTED_FIELD_NUMBER: _ClassVar[int]
    PLANNED_BUDGET_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_CAP_FIELD_NUMBER: _ClassVar[int]
    CAPPED_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    budget: int
    models: int
    items: int
    trials: int
    quality_trials: int
    queries: Spread
    prompt_tokens: Spread
    generated_tokens: Spread
    token_source: str
    model_loads: Spread
    adapter_loads: Spread
    swaps: Spread
    gpu_seconds: Spread
    load_gpu_seconds: Spread
    wall_seconds: Spread
    loss_mean: float
    loss_p90: float
    p_best: float
    accounted: bool
    planned_budget: int
    gpu_seconds_cap: float
    capped: float
    cached: Spread
    def __init__(self, algorithm: _Optional[str] = ..., budget: _Optional[int] = ..., models: _Optional[int] = ..., items: _Optional[int] = ..., trials: _Optional[int] = ..., quality_trials: _Optional[int] = ..., queries: _Optional[_Union[Spread, _Mapping]] = ..., prompt_tokens: _Optional[_Union[Spread, _Mapping]] = ..., generated_tokens: _Optional[_Union[Spread, _Mapping]] = ..., token_source: _Optional[str] = ..., model_loads: _Optional[_Union[Spread, _Mapping]] = ..., adapter_loads: _Optional[_Union[Spread, _Mapping]] = ..., swaps: _Optional[_Union[Spread, _Mapping]] = ..., gpu_seconds: _Optional[_Union[Spread, _Mapping]] = ..., load_gpu_seconds: _Optional[_Union[Spread, _Mapping]] = ..., wall_seconds: _Optional[_Union[Spread, _Mapping]] = ..., loss_mean: _Optional[float] = ..., loss_p90: _Optional[float] = ..., p_best: _Optional[float] = ..., accounted: _Optional[bool] = ..., planned_budget: _Optional[int] = ..., gpu_seconds_cap: _Optional[float] = ..., capped: _Optional[float] = ..., cached: _Optional[_Union[Spread, _Mapping]] = ...) -> None: ...

class PlanSearchResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: SearchPlan
    def __init__(self, plan: _Optional[_Union[SearchPlan, _Mapping]] = ...) -> None: ...
