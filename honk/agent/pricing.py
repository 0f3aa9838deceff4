"""What a model run costs, from the usage the API reports.

Prices are US dollars per million tokens. Cache writes cost 1.25× input, cache reads 0.1×.
The offline scripted model is priced as Sonnet, so the demo shows what Claude would cost.
"""

from __future__ import annotations

from honk.workflows.contract import Usage

# (input, output) per million tokens, matched by model-name prefix, most specific first.
PRICES: list[tuple[str, float, float]] = [
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("scripted-model", 3.0, 15.0),
]
DEFAULT_PRICE = (3.0, 15.0)


def price(model: str) -> tuple[float, float]:
    return next(((i, o) for prefix, i, o in PRICES if model.startswith(prefix)), DEFAULT_PRICE)


def usage_of(model: str, input_tokens: int, output_tokens: int, cache_write: int, cache_read: int) -> Usage:
    per_in, per_out = price(model)
    cost = (
        input_tokens * per_in + output_tokens * per_out + cache_write * per_in * 1.25 + cache_read * per_in * 0.1
    ) / 1_000_000
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_tokens=cache_write,
        cache_read_tokens=cache_read,
        cost_usd=round(cost, 6),
    )


class Meter:
    """Running totals, overall and per model."""

    def __init__(self) -> None:
        self.total = Usage()
        self.by_model: dict[str, Usage] = {}

    def add(self, model: str, api_usage: object) -> Usage:
        usage = usage_of(
            model,
            getattr(api_usage, "input_tokens", 0) or 0,
            getattr(api_usage, "output_tokens", 0) or 0,
            getattr(api_usage, "cache_creation_input_tokens", 0) or 0,
            getattr(api_usage, "cache_read_input_tokens", 0) or 0,
        )
        self.add_usage(model, usage)
        return usage

    def add_usage(self, model: str, usage: Usage) -> None:
        self.total = self.total.plus(usage)
        self.by_model[model] = self.by_model.get(model, Usage()).plus(usage)

    @property
    def tokens(self) -> int:
        t = self.total
        return t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens
