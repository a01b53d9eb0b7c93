"""Random client frames for a real socket, each with the reply it must get (issue 16).

``FrameFactory(seed).frame()`` gives one :class:`Sent`: near misses of real requests (one param
unknown or of the wrong type, ``params`` not an object, the action misspelt or not a string,
a ``request_id`` of the wrong type), valid requests of every action that changes nothing
(``subscribe`` is left out: each one would hold a subscription), random JSON of any shape,
garbage text (not JSON, ``NaN``, ``1e400``, deep nesting), binary frames and frames near the
size limit. A seeded ``random.Random``, not hypothesis: thousands of frames go over one
connection, and the same seed gives the same frames on every run.

Every frame stays under the bridge's default ``max_frame_bytes`` (65,536): frames over it close
the connection (1009), so a test sends those on connections of their own.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.factories.requests import ACTION_PARAMS, SUBSCRIBE_PARAMS, alias_params

RequestId = str | int | None
MAX_BYTES = 60_000   # below the default 65,536-byte frame limit, with room for the envelope

INVALID_MESSAGE = frozenset({"INVALID_MESSAGE"})
INVALID_PARAMS = frozenset({"INVALID_PARAMS"})
UNKNOWN_ACTION = frozenset({"UNKNOWN_ACTION"})
# the reply to a frame without a readable id: a parse error, or (deep params) a params error
ANONYMOUS = INVALID_MESSAGE | INVALID_PARAMS

# values no param of any action accepts: every param is a string, an integer, a boolean, a
# list of strings or one of fixed strings, and none of them is a float, an object, "" or [{}]
BAD_VALUES: tuple[Any, ...] = ({}, 1.5, "", [{}], {"a": [1, {"b": None}]}, -0.5, [[]])
BAD_IDS: tuple[str, ...] = ("1.5", "true", "false", "[1]", "{}", "18446744073709551616", "1e400",
                            "-9223372036854775809")
LITERALS = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "tru", "nul",
            '"\\ud800"', '{"a":1,}', "{'a':1}", "[1,2", '{"action":"ping"', "\ufeff{}", "")
# NUL and control characters, bidi marks (RTL), BOM, emoji, quotes and backslashes...
SAFE_ALPHABET = ("abcXYZ019 _-/.:\x00\x01\x1f\x7f\u200e\u200f\u202a\u202e\u2066\u00e9\u00df"
                 "\u4e2d\u0627\U0001f4a5\U0001f600\ufeff\ufffd\"\\")
# ... and lone surrogates, which json.dumps escapes ("\ud800") and orjson refuses to read: a
# frame holding one is not JSON to the bridge, so only frames without an id use them
ALPHABET = SAFE_ALPHABET + "\ud800\udfff"


@dataclass(frozen=True)
class Sent:
    """A frame and what must come back: one reply carrying ``request_id`` (None: a reply
    without one) whose error code is one of ``codes`` (None: any, or a success)."""

    payload: str | bytes
    request_id: RequestId
    codes: frozenset[str] | None


def templates() -> list[tuple[str, dict[str, Any]]]:
    """(action, valid params) of every action, subscribe once per channel and per alias."""
    found = [(action, params) for action, params in ACTION_PARAMS.items()]
    found += [("subscribe", params) for params in SUBSCRIBE_PARAMS.values()]
    found += [(f"stream_{channel}", alias_params(channel)) for channel in SUBSCRIBE_PARAMS]
    return found


class FrameFactory:
    """Seeded random frames; request ids are unique across every frame it makes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = itertools.count()
        self.templates = templates()
        self.known = {action for action, _ in self.templates}
        self.kinds: list[tuple[Callable[[], Sent], int]] = [
            (self.near_miss, 40), (self.valid, 10), (self.random_json, 15), (self.garbage, 10),
            (self.binary, 8), (self.long, 5), (self.huge_id, 4), (self.deep_params, 3),
            (self.bad_id, 5)]

    def frame(self) -> Sent:
        makers, weights = zip(*self.kinds, strict=True)
        sent: Sent = self.rng.choices(makers, weights)[0]()
        size = len(sent.payload if isinstance(sent.payload, bytes) else sent.payload.encode())
        assert size <= MAX_BYTES, f"a {size}-byte frame would close the connection"
        return sent

    def frames(self, count: int) -> list[Sent]:
        return [self.frame() for _ in range(count)]

    # ---------------------------------------------------------------- pieces

    def new_id(self) -> str | int:
        """A fresh id, a string or an integer (both are echoed)."""
        n = next(self.serial)
        return f"f{n}" if n % 2 else n

    def text(self, size: int | None = None, safe: bool = False) -> str:
        """Random characters; ``safe``: no lone surrogate (the frame stays JSON to orjson)."""
        size = self.rng.randint(0, 12) if size is None else size
        alphabet = SAFE_ALPHABET if safe else ALPHABET
        return "".join(self.rng.choice(alphabet) for _ in range(size))

    def value(self, depth: int = 0, safe: bool = False) -> Any:
        """Any JSON value; ``safe``: one orjson reads (no lone surrogate, no ``NaN`` or
        ``Infinity``, which json.dumps writes as such)."""
        scalars: list[Callable[[], Any]] = [
            lambda: None, lambda: self.rng.random() < 0.5, lambda: self.rng.randint(-2**70, 2**70),
            lambda: self.rng.choice([2**63, 2**64 - 1, -2**63 - 1, 0, -1]),
            lambda: self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-300, 308),   # finite
            lambda: self.text(safe=safe)]
        if not safe:
            scalars.append(lambda: self.rng.choice([float("nan"), float("inf"), -float("inf")]))
        if depth < 4 and self.rng.random() < 0.3:
            size = self.rng.randint(0, 4)
            if self.rng.random() < 0.5:
                return [self.value(depth + 1, safe) for _ in range(size)]
            return {self.text(safe=safe): self.value(depth + 1, safe) for _ in range(size)}
        return self.rng.choice(scalars)()

    def request(self, action: Any, params: Any, request_id: RequestId,
                ascii_only: bool = True) -> str:
        """A request frame; ``ascii_only=False`` writes non-ASCII as UTF-8, not as escapes
        (1 to 4 bytes a character, not 6 or 12: what keeps a long frame under the limit)."""
        frame: dict[str, Any] = {"action": action, "params": params}
        if request_id is not None:
            frame["request_id"] = request_id
        return json.dumps(frame, ensure_ascii=ascii_only)

    # ---------------------------------------------------------------- kinds

    def near_miss(self) -> Sent:
        """A real request broken one way, so its reply's code is known (and no subscription
        is ever made)."""
        action, params = self.rng.choice(self.templates)
        params, request_id = dict(params), self.new_id()
        how = self.rng.randrange(5)
        if how == 0 or (how == 1 and not params):
            params[f"zz_{self.text(4, safe=True)}"] = self.value(safe=True)
            return Sent(self.request(action, params, request_id), request_id, INVALID_PARAMS)
        if how == 1:
            params[self.rng.choice(sorted(params))] = self.rng.choice(BAD_VALUES)
            return Sent(self.request(action, params, request_id), request_id, INVALID_PARAMS)
        if how == 2:
            odd = self.rng.choice([[params], "params", 7, True, [], 0.5])
            return Sent(self.request(action, odd, request_id), request_id, INVALID_PARAMS)
        if how == 3:
            return Sent(self.request(self.misspelt(action), params, request_id), request_id,
                        UNKNOWN_ACTION)
        odd_action = self.rng.choice(["", None, 1, [action], {"name": action}, True])
        return Sent(self.request(odd_action, params, request_id), request_id, INVALID_MESSAGE)

    def misspelt(self, action: str) -> str:
        spelt = self.rng.choice([action.upper(), action + "s", action + " ", " " + action,
                                 action.replace("_", "-"), action + "\u200f", action[:-1]])
        return spelt if spelt not in self.known else spelt + "_"

    def valid(self) -> Sent:
        """A valid request that changes nothing: it reaches the cache service (NOT_FOUND,
        an empty list, FORBIDDEN for the bad refresh token) or is answered by the bridge."""
        action = self.rng.choice(sorted(ACTION_PARAMS))
        request_id = self.new_id()
        return Sent(self.request(action, ACTION_PARAMS[action], request_id), request_id, None)

    def random_json(self) -> Sent:
        value = self.value()
        if isinstance(value, dict):
            value.pop("action", None)
        return Sent(json.dumps(value), None, INVALID_MESSAGE)

    def garbage(self) -> Sent:
        choice = self.rng.randrange(3)
        if choice == 0:
            payload = self.text(self.rng.randint(0, 200), safe=True)   # raw: must be UTF-8
            payload = payload if not payload.lstrip().startswith("{") else "x" + payload
        elif choice == 1:
            payload = self.rng.choice(LITERALS)
        else:
            depth = self.rng.randint(1, MAX_BYTES // 2)
            return Sent("[" * depth + "]" * depth, None, INVALID_MESSAGE)
        try:   # text that json.loads reads as an object must not carry an action by chance
            if isinstance(json.loads(payload), dict):
                payload = "[" + payload
        except ValueError:
            pass
        return Sent(payload, None, INVALID_MESSAGE)

    def binary(self) -> Sent:
        size = self.rng.choice([0, 1, 16, 256, 4096])
        return Sent(self.rng.randbytes(size), None, INVALID_MESSAGE)

    def long(self) -> Sent:
        """Frames near the size limit: a long param, a long unknown action, a long array."""
        request_id = self.new_id()
        size = self.rng.randint(1_000, MAX_BYTES // 4)   # up to 4 UTF-8 bytes per character
        filler = self.rng.choice("aé中\U0001f4a5") * size
        choice = self.rng.randrange(3)
        if choice == 0:
            params = {"exchange": "binance", "symbol": filler}
            frame = self.request("get_ticker", params, request_id, ascii_only=False)
            return Sent(frame, request_id, INVALID_PARAMS)
        if choice == 1:
            return Sent(self.request(filler, {}, request_id, ascii_only=False), request_id,
                        UNKNOWN_ACTION)
        return Sent(json.dumps([filler[:10]] * (size // 16), ensure_ascii=False), None,
                    INVALID_MESSAGE)

    def huge_id(self) -> Sent:
        """An integer id at the edge of 64 bits: read as an integer, so echoed exactly."""
        n = next(self.serial)
        request_id = 2**64 - 1 - n if n % 2 else -2**63 + n
        return Sent(self.request("ping", {"extra": 1}, request_id), request_id, INVALID_PARAMS)

    def bad_id(self) -> Sent:
        """An id that is not a string or an integer (a float, a bool, beyond 64 bits): the
        error frame cannot carry it."""
        raw = self.rng.choice(BAD_IDS)
        return Sent(f'{{"action":"ping","request_id":{raw}}}', None, INVALID_MESSAGE)

    def deep_params(self) -> Sent:
        """``params`` nested past orjson's 1,024 levels (not JSON to it), or just within them
        (an unknown parameter)."""
        depth = self.rng.choice([10, 1000, 1022, 1023, 1024, 1025, 5000, 9000])   # 6 bytes a level
        nested = '{"a":' * depth + "1" + "}" * depth
        return Sent('{"action":"ping","params":' + nested + "}", None, ANONYMOUS)
