"""Hash tags and slots: which keys Redis Cluster keeps together (SPEC §9.4).

Why: on a cluster a Lua script may only touch keys of one hash slot, and a key's slot is the
CRC16 of its hash tag (the text between the first ``{`` and the next ``}``) when it has one.
So every key of the layout names its unit in braces: a book's levels and its change feed, an
exchange's tickers and their feed, ... share a tag, which makes a write and its stream entry one
script on one node (atomic, as on a single Redis). The tags are in the key names in every mode:
one layout, whatever Redis runs as.

Writes that span units (a batch of tickers of several exchanges, of several books) are split
per slot on a cluster (:func:`slot_groups`), one script call each; on a single Redis they stay
one call, since any script may touch any key there.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.crc import key_slot

PREFIX = "cache:v1:"


def tagged(tag: str, rest: str) -> str:
    """``cache:v1:{tag}:rest``: a key of the unit ``tag``. A ``}`` inside ``tag`` (in a symbol,
    say) ends the hash tag early, but at the same place in every key of that unit: its keys
    still share one slot, and key names stay distinct."""
    return f"{PREFIX}{{{tag}}}:{rest}"


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first non-empty ``{...}``, else all of it."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def confirm_key(stream: str) -> str:
    """A scratch key in ``stream``'s slot: a change-feed reader writes it so that its own WAIT
    covers the entries it read (see cache_service.changefeed, StreamReader._confirmed). A write
    in the stream's own slot is on the stream's node on a cluster, and stays there (a PUBLISH,
    the reader's earlier way, is sent to every node of a cluster over its bus)."""
    return tagged(hash_tag(stream), "confirm")


def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (the same function Redis uses)."""
    return int(key_slot(key.encode()))


def slot_groups(keys: Sequence[str], cluster: bool) -> list[list[int]]:
    """The indices of ``keys`` grouped by slot, each group in order, groups in order of first
    appearance; one group of every index when not on a cluster."""
    if not cluster:
        return [list(range(len(keys)))] if keys else []
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(index)
    return list(groups.values())
