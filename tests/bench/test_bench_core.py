"""The harness's measuring logic, without sockets: sequence checks, histograms, pacing, plans."""

from __future__ import annotations

import zlib

import pytest

from bench.config import ConfigError, parse
from bench.depth import cpu_budget
from bench.fanout import probe_layout
from bench.frames import decode, ticker_updates
from bench.latency import LatencyHistogram
from bench.pacing import Pacer
from bench.publisher import PublishPlan
from bench.rawws import FrameReader, accepted_deflate, client_frame, handshake_request
from bench.sequence import SequenceChecker
from bench.targets import evaluate
from bench.ticks import SequenceCounter, baseline_frame, symbol_names, ticker_fields


def test_sequence_checker_counts_gaps_duplicates_and_reordering() -> None:
    checker = SequenceChecker()
    for seq in (1, 2, 4, 4, 3, 5):
        checker.observe("A", seq)
    checker.observe("B", 1)
    assert (checker.received, checker.gaps, checker.duplicates, checker.reordered) == (7, 1, 1, 1)
    assert checker.caught_up({"A": 5, "B": 1})
    assert not checker.caught_up({"A": 5, "B": 3})
    assert checker.missing_tail({"A": 5, "B": 3, "C": 2}) == 4


def test_histogram_percentiles_merge_and_wire_round_trip() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 101):
        hist.record(ms / 1000.0)
    hist.record(-0.00001)
    other = LatencyHistogram()
    other.record(7.5)  # beyond the buckets: kept exactly
    hist.merge(LatencyHistogram.from_wire(other.to_wire()))
    summary = hist.summary_ms()
    assert summary["samples"] == 102
    assert summary["p50_ms"] == pytest.approx(50.1, abs=0.2)
    assert summary["p99_ms"] == pytest.approx(100.1, abs=0.2)
    assert summary["max_ms"] == 7500.0
    assert hist.percentile(100.0) == 7.5
    assert LatencyHistogram().summary_ms()["p99_ms"] is None


def test_pacer_releases_messages_on_schedule_with_bounded_bursts() -> None:
    pacer = Pacer(rate=1000.0, total=5000, start=100.0, max_burst=2000)
    assert pacer.due(100.0) == 0
    assert pacer.next_wakeup(100.0) == pytest.approx(0.001)
    assert pacer.due(100.5) == 500
    pacer.mark(500)
    assert pacer.due(110.0) == 2000  # far behind: capped burst
    pacer.mark(4500)
    assert pacer.done and pacer.due(200.0) == 0 and pacer.next_wakeup(200.0) == 0.0


def test_publish_plan_gives_every_symbol_the_same_count() -> None:
    plan = PublishPlan(exchange="x", symbols=symbol_names(3), rate=100, duration_s=1.0, streams=2)
    assert plan.total == 99
    assert plan.final() == {"S000/USDT": 33, "S001/USDT": 33, "S002/USDT": 33}
    assert plan.partitions() == [["S000/USDT", "S002/USDT"], ["S001/USDT"]]
    by_rate = [
        PublishPlan(exchange="x", symbols=symbol_names(50), rate=rate, duration_s=1.0)
        for rate in (500, 10_000, 10_001, 20_000)
    ]
    assert [plan.stream_count for plan in by_rate] == [1, 1, 2, 2]  # one per 10,000 ticks/s
    counter = SequenceCounter(["a", "b"])
    assert [counter.next() for _ in range(3)] == [("a", 1), ("b", 1), ("a", 2)]
    assert counter.final() == {"a": 2, "b": 1}


def test_frames_carry_sequence_and_send_time() -> None:
    fields = ticker_fields("x", "S000/USDT", 7, 123.5)
    frame = baseline_frame(fields)
    assert ticker_updates(frame) == [fields]
    assert ticker_updates({"type": "batch", "updates": [frame, frame]}) == [fields, fields]
    assert ticker_updates({"type": "pong"}) == []
    assert decode(b'{"type":"pong"}') == {"type": "pong"}
    with pytest.raises(TypeError):
        decode(b"[1]")


def test_config_quick_defaults_and_clear_errors() -> None:
    config = parse(["--quick", "fanout", "--rates", "100,200"])
    assert config.quick and config.scenarios == ("fanout",) and config.rates == (100.0, 200.0)
    assert config.json_path.name == "quick.json"
    assert parse([]).clients == 100
    assert parse([]).publisher_streams is None  # one per 10,000 ticks/s
    for argv, message in (
        (["nope"], "unknown scenario"),
        (["--batch-ms", "0"], "--batch-ms"),
        (["--bridge-url", "http://x"], "ws://"),
        (["--bridge-url", "ws://x/ws"], "--grpc-target"),
        (["--modes", "fast"], "unknown mode"),
        (["--clients", "0"], "--clients"),
        (["--publisher-streams", "0"], "--publisher-streams"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse(argv)


def _server_frame(opcode: int, payload: bytes) -> bytes:
    if len(payload) < 126:
        return bytes([0x80 | opcode, len(payload)]) + payload
    if len(payload) < 1 << 16:
        return bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big") + payload
    return bytes([0x80 | opcode, 127]) + len(payload).to_bytes(8, "big") + payload


class _Messages:
    """Collects what a FrameReader hands over, copied out of the reader's buffer."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes]] = []

    def __call__(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        self.seen.append((opcode, bytes(buf[start:stop])))


def test_frame_reader_hands_over_whole_messages_however_the_bytes_arrive() -> None:
    update = b'{"type":"update","action":"ticker_update","result":{}}'
    big = b'{"type":"batch","updates":[' + b",".join([update] * 2000) + b"]}"  # 64-bit length
    stream = (
        _server_frame(0x1, b'{"type":"connection"}')
        + _server_frame(0x1, update)
        + _server_frame(0x1, big)
        + _server_frame(0x9, b"hi")
        + _server_frame(0x8, (1001).to_bytes(2, "big") + b"bye")
    )
    expected = [(0x1, b'{"type":"connection"}'), (0x1, update), (0x1, big)]
    for chunk in (7, 4096, len(stream)):  # split everywhere, mostly whole, all at once
        messages = _Messages()
        reader = FrameReader(messages)
        for start in range(0, len(stream), chunk):
            reader.feed(stream[start : start + chunk])
        assert messages.seen == expected
        assert reader.frames == 5
        assert not reader.buffer
        assert reader.close_code == 1001
        assert reader.replies == [
            client_frame(0xA, b"hi"),
            client_frame(0x8, (1001).to_bytes(2, "big")),
        ]


def test_frame_reader_assembles_fragments_and_inflates_deflated_messages() -> None:
    messages = _Messages()
    reader = FrameReader(messages, deflate=True)
    fragments = bytes([0x01, 3]) + b"abc" + bytes([0x00, 3]) + b"def" + bytes([0x80, 1]) + b"g"
    reader.feed(fragments + _server_frame(0x9, b""))  # a ping may come between fragments
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for text in (b'{"a":1}', b'{"a":1}'):  # the second message reuses the first one's window
        body = deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(b"\x00\x00\xff\xff")
        reader.feed(bytes([0xC1, len(body) - 4]) + body[:-4])
    assert messages.seen == [(0x1, b"abcdefg"), (0x1, b'{"a":1}'), (0x1, b'{"a":1}')]
    assert reader.replies == [client_frame(0xA, b"")]
    plain = FrameReader(_Messages())
    with pytest.raises(ValueError, match="did not agree to deflate"):
        plain.feed(bytes([0xC1, 2]) + b"xx")


def test_deflate_is_read_from_the_handshake_response() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    assert accepted_deflate(head) == (False, False)
    agreed = head + b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
    assert accepted_deflate(agreed) == (True, True)
    assert b"permessage-deflate" in handshake_request("ws://h:1/ws", deflate=True)
    assert b"Extensions" not in handshake_request("ws://h:1/ws")


def test_client_frames_are_masked_with_a_zero_key() -> None:
    small, medium = client_frame(0x1, b"x" * 5), client_frame(0x1, b"x" * 300)
    assert small[:2] == bytes([0x81, 0x80 | 5]) and small[2:6] == b"\0\0\0\0"
    assert medium[1] == 0x80 | 126 and int.from_bytes(medium[2:4], "big") == 300
    request = handshake_request("ws://127.0.0.1:9/ws?token=a")
    assert request.startswith(b"GET /ws?token=a HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")


def test_targets_judge_a_run() -> None:
    def point(mode: str, rate: float, p99: float, received: int, conflated: int = 0) -> dict:
        return {
            "mode": mode,
            "offered_rate": rate,
            "clients": 100,
            "connected": 100,
            "publisher": {"achieved_rate": rate},
            "expected_updates": 1000,
            "received_updates": received,
            "conflated": conflated,
            "lost": 1000 - received - conflated,
            "delivered_per_s": received / 10,
            "latency": {"p99_ms": p99},
        }

    document = {
        "fanout": [
            point("batch", 10000.0, 30.0, 600, 400),
            point("baseline", 10000.0, 900.0, 300),
            point("plain", 500.0, 9.0, 1000),
            point("baseline", 500.0, 4.0, 1000),
        ],
        "capacity": {
            "steps": [
                {
                    "target": 10000,
                    "open": 10000,
                    "bridge_rss_mib": 300.0,
                    "rss_per_connection_kib": 25.0,
                }
            ]
        },
    }
    verdicts = evaluate(document)
    assert verdicts["fanout_10k_batch"]["met"] is True
    assert verdicts["idle_10k"]["met"] is True
    assert verdicts["idle_50k"]["met"] is None and verdicts["idle_50k"]["open"] == 10000
    ahead = verdicts["ahead_of_baseline"]
    assert ahead["met"] is True
    # below the sweep the relay wins on latency: reported, not judged
    assert [r["rate"] for r in ahead["rates"]] == [10000.0]
    assert [(r["rate"], r["ahead"]) for r in ahead["below_sweep"]] == [(500.0, False)]
    only_below = evaluate({"fanout": document["fanout"][2:], "capacity": None})
    assert only_below["ahead_of_baseline"]["met"] is None
    assert evaluate({"fanout": [], "capacity": None})["fanout_10k_batch"]["met"] is None


def test_probes_are_spread_over_workers_and_through_each_connection_order() -> None:
    layout = probe_layout([25, 25, 25, 25], 10)
    assert [sum(worker) for worker in layout] == [3, 3, 2, 2]
    assert [i for i, probe in enumerate(layout[0]) if probe] == [4, 12, 20]
    assert probe_layout([3, 2], 5) == [[True] * 3, [True] * 2]
    assert probe_layout([2, 2, 1], 1) == [[False, True], [False, False], [False]]


def test_depth_and_trades_targets_and_flags() -> None:
    depth_point = {
        "offered_rate": 10000.0, "books": 50, "depth": 25, "clients": 100,
        "publisher": {"achieved_rate": 9990.0}, "latency": {"p99_ms": 30.0}, "lost": 0,
        "merged": 0, "checksum_failures": 0, "final_mismatches": 0, "delivered_per_s": 1.0,
        "probe": {"verified": 10, "skipped": 0, "unchecked": 0},
    }
    trade_point = {
        "offered_rate": 10000.0, "clients": 100, "publisher": {"achieved_rate": 9990.0},
        "latency": {"p99_ms": 80.0}, "lost": 0, "duplicates": 0, "reordered": 0,
        "closed_early": {}, "delivered_per_s": 1.0,
    }
    verdicts = evaluate({"fanout": [], "capacity": None, "depth": [depth_point],
                         "trades": [trade_point]})
    assert verdicts["depth_10k"]["met"] is True and verdicts["trades_10k"]["met"] is True
    slow = {**depth_point, "publisher": {"achieved_rate": 3000.0}}
    failed = {**depth_point, "checksum_failures": 1}
    for bad in (slow, failed):
        assert evaluate({"depth": [bad]})["depth_10k"]["met"] is False
    assert evaluate({})["depth_10k"]["met"] is None
    config = parse(["depth", "--depth-rates", "2000,10000", "--depth-levels", "10"])
    assert config.depth_rates == (2000.0, 10000.0) and config.depth_levels == 10
    for argv, message in ((["--depth-levels", "30"], "--depth-levels"),
                          (["--trade-rates", "0"], "--trade-rates"),
                          (["--depth-probes", "0"], "--depth-probes")):
        with pytest.raises(ConfigError, match=message):
            parse(argv)


def test_depth_probe_verifies_checksums_and_finds_skipped_updates() -> None:
    """The probe's copy follows the server's updates, a wrong checksum is counted (not
    trusted), and the coordinator's check finds an update the feed had and the probe lacks."""
    import orjson

    from bench.depth import DepthClient, DepthJob, _probe_checks
    from bench.latency import LatencyHistogram
    from bench.rawws import OP_TEXT
    from marketbridge.market.book import Book
    from marketbridge.market.depth_feed import DepthFeed

    book = Book()
    book.apply_snapshot([("99.0", "1"), ("98.0", "2")], [("101.0", "1"), ("102.0", "3")], 7)
    feed = DepthFeed(book, 10)
    job = DepthJob(0, [], "x", ["B/USDT"], 10, 5.0, [True])
    client = DepthClient(job, True, LatencyHistogram())
    view, check = feed.snapshot()
    client.on_message(OP_TEXT, orjson.dumps({
        "type": "response", "action": "subscribe", "request_id": 1, "success": True,
        "result": {"subscription_id": "s1", "seq": "5-0", "snapshot": {
            "bids": view.bids, "asks": view.asks, "checksum": check}}}), 0, 10**9)

    def frame(seq: str, update: object, checksum: int) -> bytes:
        return orjson.dumps({"type": "batch", "updates": [{
            "type": "update", "action": "book_update", "subscription_id": "s1", "seq": seq,
            "result": {"bids": update.bids, "asks": update.asks,  # type: ignore[attr-defined]
                       "checksum": checksum, "time": 0.0}}]})

    book.apply_delta([("99.5", "4")], [], 8)
    update = feed.advance()
    raw = frame("6-0", update, update.checksum)
    client.on_message(OP_TEXT, raw, 0, len(raw))
    book.apply_delta([], [("101.0", "0")], 9)
    update = feed.advance()
    raw = frame("8-0", update, update.checksum ^ 1)  # a wrong checksum
    client.on_message(OP_TEXT, raw, 0, len(raw))
    [sub] = client.subs.values()
    assert (sub.verified, sub.failures, sub.seqs) == (1, 1, ["6-0", "8-0"])
    report = client.report()
    tally = _probe_checks(report, {"B/USDT": ["5-0", "6-0", "7-0", "8-0"]},
                          {"B/USDT": report["B/USDT"]["view"]})
    assert (tally["skipped"], tally["unexpected"], tally["failures"]) == (1, 0, 1)


def test_depth_cpu_budget_per_delta_and_cores_needed() -> None:
    usage = {"redis": {"cpu_s": 1.0}, "cache_service": {"cpu_s": 10.0}, "bridge": {"cpu_s": 5.0},
             "baseline": {"cpu_s": 0.0}}
    load = {"publisher": 0.5, "clients": 8.0, "probes": 6.0}
    budget = cpu_budget(10000.0, 50000, usage, load)
    assert budget["us_per_delta"] == {"redis": 20.0, "cache_service": 200.0, "bridge": 100.0,
                                      "probes": 120.0, "counting_clients": 40.0, "publisher": 10.0}
    assert budget["cores_at_offered_rate"] == 4.9   # 490 us per delta x 10,000 deltas/s
    assert cpu_budget(10000.0, 0, usage, load)["cores_at_offered_rate"] is None
