"""The checksum: the worked example docs/market_data.md quotes, and the string rules."""

import zlib

from marketbridge.market.checksum import checksum, checksum_string

ASKS = [("50000.5", "0.00100000"), ("50001.0", "1.5")]
BIDS = [("50000.1", "0.25000000"), ("49999.9", "2")]
EXAMPLE_STRING = "50000510000050001015500001250000004999992"
EXAMPLE_CRC = 3211480509


def test_worked_example() -> None:
    assert checksum_string(BIDS, ASKS) == EXAMPLE_STRING
    assert checksum(BIDS, ASKS) == EXAMPLE_CRC == zlib.crc32(EXAMPLE_STRING.encode())


def test_kraken_documented_level_formatting() -> None:
    # Kraken's v2 guide: ask 45285.2 / 0.00100000 contributes "452852100000"
    assert checksum_string([], [("45285.2", "0.00100000")]) == "452852100000"
    # Kraken's v1 guide: "0.05000" with volume "0.00000304" formats as "5000304"
    assert checksum_string([], [("0.05000", "0.00000304")]) == "5000304"


def test_only_top_ten_each_side_asks_first() -> None:
    asks = [(str(100 + i), "1") for i in range(12)]
    bids = [(str(99 - i), "1") for i in range(12)]
    text = checksum_string(bids, asks)
    assert text == "".join(f"{100 + i}1" for i in range(10)) + "".join(
        f"{99 - i}1" for i in range(10))


def test_strings_not_values_are_hashed() -> None:
    assert checksum([("50000.1", "1")], []) != checksum([("50000.10", "1")], [])


def test_unsigned_32_bit() -> None:
    values = {checksum([(f"{i}.5", "1")], []) for i in range(1, 200)}
    assert all(0 <= v < 2**32 for v in values)
    assert any(v >= 2**31 for v in values)
