from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ticker(_message.Message):
    __slots__ = ("exchange", "symbol", "price", "bid", "ask", "last", "volume", "change_24h", "time")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    CHANGE_24H_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    price: float
    bid: float
    ask: float
    last: float
    volume: float
    change_24h: float
    time: float
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., price: _Optional[float] = ..., bid: _Optional[float] = ..., ask: _Optional[float] = ..., last: _Optional[float] = ..., volume: _Optional[float] = ..., change_24h: _Optional[float] = ..., time: _Optional[float] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "user_id", "bot_id", "exchange", "symbol", "side", "order_type", "status", "price", "amount", "filled", "created_at", "updated_at")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    bot_id: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    status: str
    price: float
    amount: float
    filled: float
    created_at: float
    updated_at: float
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., bot_id: _Optional[str] = ..., exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[str] = ..., order_type: _Optional[str] = ..., status: _Optional[str] = ..., price: _Optional[float] = ..., amount: _Optional[float] = ..., filled: _Optional[float] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ...) -> None: ...

class Bot(_message.Message):
    __slots__ = ("bot_id", "user_id", "name", "status", "exchange", "symbols", "pnl", "message", "updated_at")
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    PNL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    bot_id: str
    user_id: str
    name: str
    status: str
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    pnl: float
    message: str
    updated_at: float
    def __init__(self, bot_id: _Optional[str] = ..., user_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., pnl: _Optional[float] = ..., message: _Optional[str] = ..., updated_at: _Optional[float] = ...) -> None: ...

class StreamGap(_message.Message):
    __slots__ = ("requested", "first_retained")
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FIRST_RETAINED_FIELD_NUMBER: _ClassVar[int]
    requested: str
    first_retained: str
    def __init__(self, requested: _Optional[str] = ..., first_retained: _Optional[str] = ...) -> None: ...

class StreamLive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamHeartbeat(_message.Message):
    __slots__ = ("server_time",)
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    server_time: float
    def __init__(self, server_time: _Optional[float] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: str
    def __init__(self, seq: _Optional[str] = ...) -> None: ...

class GetTickerRequest(_message.Message):
    __slots__ = ("exchange", "symbol")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class ListTickersRequest(_message.Message):
    __slots__ = ("exchange", "symbols")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTickersResponse(_message.Message):
    __slots__ = ("tickers",)
    TICKERS_FIELD_NUMBER: _ClassVar[int]
    tickers: _containers.RepeatedCompositeFieldContainer[Ticker]
    def __init__(self, tickers: _Optional[_Iterable[_Union[Ticker, _Mapping]]] = ...) -> None: ...

class PublishTickerRequest(_message.Message):
    __slots__ = ("ticker", "tickers")
    TICKER_FIELD_NUMBER: _ClassVar[int]
    TICKERS_FIELD_NUMBER: _ClassVar[int]
    ticker: Ticker
    tickers: _containers.RepeatedCompositeFieldContainer[Ticker]
    def __init__(self, ticker: _Optional[_Union[Ticker, _Mapping]] = ..., tickers: _Optional[_Iterable[_Union[Ticker, _Mapping]]] = ...) -> None: ...

class PublishTickersResponse(_message.Message):
    __slots__ = ("accepted", "last_seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    last_seq: str
    def __init__(self, accepted: _Optional[int] = ..., last_seq: _Optional[str] = ...) -> None: ...

class StreamTickersRequest(_message.Message):
    __slots__ = ("exchange", "symbols", "resume_from")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    resume_from: str
    def __init__(self, exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., resume_from: _Optional[str] = ...) -> None: ...

class TickerEvent(_message.Message):
    __slots__ = ("seq", "ticker", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TICKER_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    ticker: Ticker
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., ticker: _Optional[_Union[Ticker, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class TickerEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TickerEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TickerEvent, _Mapping]]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("status", "symbol", "bot_id", "limit", "user_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    status: str
    symbol: str
    bot_id: str
    limit: int
    user_id: str
    def __init__(self, status: _Optional[str] = ..., symbol: _Optional[str] = ..., bot_id: _Optional[str] = ..., limit: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class UpsertOrderRequest(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class StreamOrdersRequest(_message.Message):
    __slots__ = ("symbols", "bot_ids", "resume_from", "user_id")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    BOT_IDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    bot_ids: _containers.RepeatedScalarFieldContainer[str]
    resume_from: str
    user_id: str
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., bot_ids: _Optional[_Iterable[str]] = ..., resume_from: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class OrderEvent(_message.Message):
    __slots__ = ("seq", "order", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    order: Order
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class GetBotRequest(_message.Message):
    __slots__ = ("bot_id",)
    BOT_ID_FIELD_NUMBER: _ClassVar[int]
    bot_id: str
    def __init__(self, bot_id: _Optional[str] = ...) -> None: ...

class ListBotsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListBotsResponse(_message.Message):
    __slots__ = ("bots",)
    BOTS_FIELD_NUMBER: _ClassVar[int]
    bots: _containers.RepeatedCompositeFieldContainer[Bot]
    def __init__(self, bots: _Optional[_Iterable[_Union[Bot, _Mapping]]] = ...) -> None: ...

class UpsertBotRequest(_message.Message):
    __slots__ = ("bot",)
    BOT_FIELD_NUMBER: _ClassVar[int]
    bot: Bot
    def __init__(self, bot: _Optional[_Union[Bot, _Mapping]] = ...) -> None: ...

class StreamBotsRequest(_message.Message):
    __slots__ = ("bot_ids", "resume_from", "user_id")
    BOT_IDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    bot_ids: _containers.RepeatedScalarFieldContainer[str]
    resume_from: str
    user_id: str
    def __init__(self, bot_ids: _Optional[_Iterable[str]] = ..., resume_from: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class BotEvent(_message.Message):
    __slots__ = ("seq", "bot", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BOT_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    bot: Bot
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., bot: _Optional[_Union[Bot, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class BookLevel(_message.Message):
    __slots__ = ("price", "qty")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    price: str
    qty: str
    def __init__(self, price: _Optional[str] = ..., qty: _Optional[str] = ...) -> None: ...

class Book(_message.Message):
    __slots__ = ("exchange", "symbol", "bids", "asks", "checksum", "time", "sequence", "seq", "depth", "stale")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    bids: _containers.RepeatedCompositeFieldContainer[BookLevel]
    asks: _containers.RepeatedCompositeFieldContainer[BookLevel]
    checksum: int
    time: float
    sequence: int
    seq: str
    depth: int
    stale: bool
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., bids: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., checksum: _Optional[int] = ..., time: _Optional[float] = ..., sequence: _Optional[int] = ..., seq: _Optional[str] = ..., depth: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class PublishBookRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "snapshot", "bids", "asks", "sequence", "time")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    snapshot: bool
    bids: _containers.RepeatedCompositeFieldContainer[BookLevel]
    asks: _containers.RepeatedCompositeFieldContainer[BookLevel]
    sequence: int
    time: float
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., snapshot: _Optional[bool] = ..., bids: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., sequence: _Optional[int] = ..., time: _Optional[float] = ...) -> None: ...

class PublishBookBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[PublishBookRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[PublishBookRequest, _Mapping]]] = ...) -> None: ...

class PublishBookResponse(_message.Message):
    __slots__ = ("accepted", "last_seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    last_seq: str
    def __init__(self, accepted: _Optional[int] = ..., last_seq: _Optional[str] = ...) -> None: ...

class GetBookRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "depth")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    depth: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class StreamBookRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "depth", "resume_from")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    depth: int
    resume_from: str
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., depth: _Optional[int] = ..., resume_from: _Optional[str] = ...) -> None: ...

class BookUpdate(_message.Message):
    __slots__ = ("exchange", "symbol", "bids", "asks", "checksum", "time", "sequence")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    bids: _containers.RepeatedCompositeFieldContainer[BookLevel]
    asks: _containers.RepeatedCompositeFieldContainer[BookLevel]
    checksum: int
    time: float
    sequence: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., bids: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[BookLevel, _Mapping]]] = ..., checksum: _Optional[int] = ..., time: _Optional[float] = ..., sequence: _Optional[int] = ...) -> None: ...

class BookStale(_message.Message):
    __slots__ = ("reason", "sequence")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    sequence: int
    def __init__(self, reason: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class BookEvent(_message.Message):
    __slots__ = ("seq", "snapshot", "update", "stale", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    snapshot: Book
    update: BookUpdate
    stale: BookStale
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., snapshot: _Optional[_Union[Book, _Mapping]] = ..., update: _Optional[_Union[BookUpdate, _Mapping]] = ..., stale: _Optional[_Union[BookStale, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class BookEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[BookEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[BookEvent, _Mapping]]] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("exchange", "symbol", "trade_id", "price", "amount", "side", "time")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    trade_id: str
    price: str
    amount: str
    side: str
    time: float
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., trade_id: _Optional[str] = ..., price: _Optional[str] = ..., amount: _Optional[str] = ..., side: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class PublishTradesRequest(_message.Message):
    __slots__ = ("trades",)
    TRADES_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    def __init__(self, trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ...) -> None: ...

class PublishTradesResponse(_message.Message):
    __slots__ = ("accepted", "last_seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    last_seq: str
    def __init__(self, accepted: _Optional[int] = ..., last_seq: _Optional[str] = ...) -> None: ...

class ListTradesRequest(_message.Message):
    __slots__ = ("exchange", "symbols", "limit")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTradesResponse(_message.Message):
    __slots__ = ("trades", "seq")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    seq: str
    def __init__(self, trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ..., seq: _Optional[str] = ...) -> None: ...

class StreamTradesRequest(_message.Message):
    __slots__ = ("exchange", "symbols", "resume_from")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbols: _containers.RepeatedScalarFieldContainer[str]
    resume_from: str
    def __init__(self, exchange: _Optional[str] = ..., symbols: _Optional[_Iterable[str]] = ..., resume_from: _Optional[str] = ...) -> None: ...

class TradeEvent(_message.Message):
    __slots__ = ("seq", "trade", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    trade: Trade
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., trade: _Optional[_Union[Trade, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class TradeEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TradeEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TradeEvent, _Mapping]]] = ...) -> None: ...

class Candle(_message.Message):
    __slots__ = ("exchange", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume", "trades", "closed")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    interval: str
    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    closed: bool
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., interval: _Optional[str] = ..., open_time: _Optional[int] = ..., open: _Optional[str] = ..., high: _Optional[str] = ..., low: _Optional[str] = ..., close: _Optional[str] = ..., volume: _Optional[str] = ..., trades: _Optional[int] = ..., closed: _Optional[bool] = ...) -> None: ...

class ListCandlesRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "interval", "limit")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    interval: str
    limit: int
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., interval: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListCandlesResponse(_message.Message):
    __slots__ = ("candles", "seq")
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    seq: str
    def __init__(self, candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., seq: _Optional[str] = ...) -> None: ...

class StreamCandlesRequest(_message.Message):
    __slots__ = ("exchange", "symbol", "interval", "resume_from")
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    exchange: str
    symbol: str
    interval: str
    resume_from: str
    def __init__(self, exchange: _Optional[str] = ..., symbol: _Optional[str] = ..., interval: _Optional[str] = ..., resume_from: _Optional[str] = ...) -> None: ...

class CandleEvent(_message.Message):
    __slots__ = ("seq", "candle", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CANDLE_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    candle: Candle
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., candle: _Optional[_Union[Candle, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...

class Canary(_message.Message):
    __slots__ = ("writer", "interval_s")
    WRITER_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    writer: str
    interval_s: float
    def __init__(self, writer: _Optional[str] = ..., interval_s: _Optional[float] = ...) -> None: ...

class StreamCanaryRequest(_message.Message):
    __slots__ = ("resume_from",)
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    resume_from: str
    def __init__(self, resume_from: _Optional[str] = ...) -> None: ...

class CanaryEvent(_message.Message):
    __slots__ = ("seq", "canary", "gap", "live", "heartbeat")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    seq: str
    canary: Canary
    gap: StreamGap
    live: StreamLive
    heartbeat: StreamHeartbeat
    def __init__(self, seq: _Optional[str] = ..., canary: _Optional[_Union[Canary, _Mapping]] = ..., gap: _Optional[_Union[StreamGap, _Mapping]] = ..., live: _Optional[_Union[StreamLive, _Mapping]] = ..., heartbeat: _Optional[_Union[StreamHeartbeat, _Mapping]] = ...) -> None: ...
