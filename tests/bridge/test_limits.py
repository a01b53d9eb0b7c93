"""Rate limiting (token bucket, sustained excess) and the connection caps."""

from __future__ import annotations

from bridge.limits import ConnectionRegistry, RateLimiter, Verdict


def test_token_bucket_allows_burst_then_rejects_then_refills() -> None:
    rl = RateLimiter(rate=10, burst=5, close_after=10, now=0.0)
    assert [rl.check(0.0) for _ in range(5)] == [Verdict.ALLOW] * 5
    assert rl.check(0.0) is Verdict.REJECT
    assert rl.check(0.1) is Verdict.ALLOW   # 0.1 s * 10/s = one token


def test_sustained_excess_closes_but_pauses_reset_it() -> None:
    rl = RateLimiter(rate=1, burst=1, close_after=3, now=0.0)
    t = 0.0
    verdicts = []
    while t < 5:
        verdicts.append(rl.check(t))
        t += 0.05
    assert Verdict.CLOSE in verdicts
    rl = RateLimiter(rate=1, burst=1, close_after=3, now=0.0)
    for start in (0.0, 2.5, 5.0, 7.5):   # short bursts with pauses longer than a second
        results = [rl.check(start + i * 0.01) for i in range(10)]
        assert Verdict.CLOSE not in results


def test_connection_registry_caps() -> None:
    reg = ConnectionRegistry(max_connections=3, max_per_user=2)
    assert reg.admit("a") is None and reg.admit("a") is None
    refusal = reg.admit("a")
    assert refusal and refusal.code == 1008 and "max connections per user" in refusal.reason
    assert reg.admit("b") is None
    refusal = reg.admit("c")
    assert refusal and refusal.code == 1013 and "max connections" in refusal.reason
    reg.release("a"), reg.release("a"), reg.release("b")
    assert reg.total == 0 and not reg.per_user
