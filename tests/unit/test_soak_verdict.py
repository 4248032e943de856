"""The soak's verdict names a rise as growth and a fall as a fall (a CPU settling after warm-up was GROWING)."""

from benchmarks.soak import Series, verdict

TIMES = [60.0 * i for i in range(10)]


def test_a_rising_series_is_growing_a_falling_one_is_not_and_a_level_one_is_flat() -> None:
    rising = Series("RSS", "MB", [100.0 + 10 * i for i in range(10)])
    falling = Series("CPU", "% of a core", [40.0 - 3 * i for i in range(10)])
    level = Series("RSS", "MB", [100.0, 100.5] * 5)
    assert verdict(rising, TIMES, warmup=0).startswith("GROWING +600.00 MB/hour")
    assert verdict(falling, TIMES, warmup=0).startswith("falling -180.00 % of a core/hour")
    assert verdict(level, TIMES, warmup=0).startswith("flat after warm-up")
