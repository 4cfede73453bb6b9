"""Claude Code 2.1.332's price catalog (docs/design/claude-code.md §17), written out by hand for
the tests. The expected costs of the price tests and of the real-CLI e2e come from here, never
from our SQL, so a wrong seed row cannot agree with itself."""

from __future__ import annotations

# tier → USD per million tokens: (input, output, 5-minute write, 1-hour write, cache read)
TIERS: dict[str, tuple[str, str, str, str, str]] = {
    "haiku_35": ("0.8", "4", "1", "1.6", "0.08"),
    "haiku_45": ("1", "5", "1.25", "2", "0.1"),
    "haiku_55": ("0.1", "0.5", "0.125", "0.2", "0.01"),
    "haiku_55_long": ("0.5", "2.5", "0.625", "1", "0.05"),  # above 100k prompt tokens
    "tier_2_10": ("2", "10", "2.5", "4", "0.2"),
    "tier_2_10_cache_read_0_10": ("2", "10", "2.5", "4", "0.1"),
    "tier_3_15": ("3", "15", "3.75", "6", "0.3"),
    "tier_4_20_cache_read_0_20": ("4", "20", "5", "8", "0.2"),
    "tier_5_25": ("5", "25", "6.25", "10", "0.5"),
    "tier_8_40_cache_read_0_20": ("8", "40", "10", "16", "0.2"),
    "tier_10_50": ("10", "50", "12.5", "20", "1"),
    "tier_10_50_cache_read_0_25": ("10", "50", "12.5", "20", "0.25"),
    "tier_15_75": ("15", "75", "18.75", "30", "1.5"),
}
HAIKU_55_LONG_PROMPT_TOKENS = 100_000  # above it the whole Haiku 5.5 request costs 5×
HAIKU_55_LONG_FACTOR = 5

# (catalog id, first-party id, tier), in the catalog's order
CATALOG: list[tuple[str, str, str]] = [
    ("claude-3-5-haiku", "claude-3-5-haiku-20241022", "haiku_35"),
    ("claude-haiku-4-5", "claude-haiku-4-5-20251001", "haiku_45"),
    ("claude-haiku-5-5", "claude-haiku-5-5", "haiku_55"),
    ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022", "tier_3_15"),
    ("claude-3-7-sonnet", "claude-3-7-sonnet-20250219", "tier_3_15"),
    ("claude-sonnet-4-0", "claude-sonnet-4-20250514", "tier_3_15"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "tier_3_15"),
    ("claude-sonnet-4-6", "claude-sonnet-4-6", "tier_3_15"),
    ("claude-sonnet-5", "claude-sonnet-5", "tier_2_10"),
    ("claude-sonnet-5-5", "claude-sonnet-5-5", "tier_2_10_cache_read_0_10"),
    ("claude-opus-4-0", "claude-opus-4-20250514", "tier_15_75"),
    ("claude-opus-4-1", "claude-opus-4-1-20250805", "tier_15_75"),
    ("claude-opus-4-5", "claude-opus-4-5-20251101", "tier_5_25"),
    ("claude-opus-4-6", "claude-opus-4-6", "tier_5_25"),
    ("claude-opus-4-7", "claude-opus-4-7", "tier_5_25"),
    ("claude-opus-4-8", "claude-opus-4-8", "tier_5_25"),
    ("claude-opus-5", "claude-opus-5", "tier_5_25"),
    ("claude-opus-5-5", "claude-opus-5-5", "tier_4_20_cache_read_0_20"),
    ("claude-fable-5", "claude-fable-5", "tier_10_50"),
    ("claude-mythos-5", "claude-mythos-5", "tier_10_50"),
    ("claude-fable-5-1", "claude-fable-5-1", "tier_10_50_cache_read_0_25"),
    ("claude-mythos-5-1", "claude-mythos-5-1", "tier_10_50_cache_read_0_25"),
    ("claude-fable-5-2", "claude-fable-5-2", "tier_8_40_cache_read_0_20"),
    ("claude-mythos-5-2", "claude-mythos-5-2", "tier_8_40_cache_read_0_20"),
]

# Fast mode, input/output per million tokens; the cache prices scale by the same factor.
FAST: dict[str, tuple[str, str]] = {
    "claude-opus-4-6": ("30", "150"),
    "claude-opus-4-7": ("30", "150"),
    "claude-opus-4-8": ("10", "50"),
    "claude-opus-5": ("10", "50"),
    "claude-opus-5-5": ("8", "40"),
    "claude-fable-5-2": ("16", "80"),
    "claude-mythos-5-2": ("16", "80"),
}
