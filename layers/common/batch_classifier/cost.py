"""Token cost of a run: model prices, model-id resolution and the estimate shown before a run.

Prices come from ``prices.yaml`` (bundled with the package, USD per 1,000 tokens, one on-demand and one
batch price for input and output per base model id); users can edit it or load their own copy. Model ids
given as inference-profile ids (``us.anthropic...``) or ARNs are priced as the base model they name.

Token counts before a run are estimated with ``estimate_tokens``, a heuristic of about four characters per
token: good enough for a budget, not what the model's tokenizer will count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from .errors import PriceFileError, PriceNotFoundError

__all__ = [
    "MODES",
    "CostEstimate",
    "ModelPrice",
    "PriceTable",
    "estimate_cost",
    "estimate_tokens",
    "resolve_model_id",
    "tokens_for_chars",
]

PRICES_FILE = "prices.yaml"
BUNDLED_SOURCE = f"the bundled {PRICES_FILE}"
MODES = ("batch", "on_demand")
#: Leading parts of cross-Region inference-profile ids, in front of the base model id.
GEOGRAPHY_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")
CHARS_PER_TOKEN = 4
TOKENS_PER_PRICE_UNIT = 1000
_USD_DIGITS = 6


@dataclass(frozen=True)
class ModelPrice:
    """Prices of one model in USD per 1,000 tokens."""

    model_id: str
    on_demand_input: float
    on_demand_output: float
    batch_input: float
    batch_output: float

    def per_1000(self, mode: str) -> tuple[float, float]:
        """``(input, output)`` USD per 1,000 tokens in ``mode`` ("batch" or "on_demand")."""
        if mode == "batch":
            return self.batch_input, self.batch_output
        if mode == "on_demand":
            return self.on_demand_input, self.on_demand_output
        raise ValueError(f"Unknown pricing mode {mode!r}; use one of {', '.join(MODES)}.")


def resolve_model_id(model_id: str) -> str:
    """The base model id behind an inference-profile id or a model / inference-profile ARN."""
    text = model_id.strip()
    if text.startswith("arn:"):
        text = text.rsplit("/", 1)[-1]
    for prefix in GEOGRAPHY_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _is_price(value: Any) -> TypeGuard[float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


def _price_value(entry: Any, mode: str, side: str, model_id: str, source: str) -> float:
    section = entry.get(mode) if isinstance(entry, dict) else None
    value = section.get(side) if isinstance(section, dict) else None
    if not _is_price(value):
        raise PriceFileError(
            f"{source}: models.{model_id}.{mode}.{side} must be a price in USD per 1,000 tokens "
            f"(a number, 0 or more), not {value!r}."
        )
    return float(value)


def _model_price(model_id: str, entry: Any, source: str) -> ModelPrice:
    def value(mode: str, side: str) -> float:
        return _price_value(entry, mode, side, model_id, source)

    return ModelPrice(
        model_id=model_id,
        on_demand_input=value("on_demand", "input"),
        on_demand_output=value("on_demand", "output"),
        batch_input=value("batch", "input"),
        batch_output=value("batch", "output"),
    )


def _parse_prices(text: str, source: str) -> dict[str, ModelPrice]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PriceFileError(f"{source} is not valid YAML ({error}); fix it or restore it.") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise PriceFileError(f"{source} has no 'models:' mapping of model ids to on_demand and batch prices.")
    prices = (_model_price(str(model_id).strip(), entry, source) for model_id, entry in models.items())
    return {price.model_id: price for price in prices}


class PriceTable:
    """Model prices by base model id, as loaded from a prices file."""

    def __init__(self, prices: Mapping[str, ModelPrice], source: str = BUNDLED_SOURCE) -> None:
        self._prices = dict(prices)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriceTable:
        """The prices in ``path``, or the bundled ``prices.yaml`` when ``path`` is None."""
        if path is None:
            text = resources.files(__package__ or "batch_classifier").joinpath(PRICES_FILE).read_text("utf-8")
            return cls(_parse_prices(text, BUNDLED_SOURCE), BUNDLED_SOURCE)
        source = f"prices file {Path(path).name!r}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise PriceFileError(f"Cannot read {source}: {error}.") from None
        return cls(_parse_prices(text, source), source)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._prices)

    def price(self, model_id: str) -> ModelPrice:
        """The prices of ``model_id`` (or of the base model it resolves to); PriceNotFoundError if none."""
        resolved = resolve_model_id(model_id)
        for candidate in (model_id.strip(), resolved):
            if candidate in self._prices:
                return self._prices[candidate]
        via = f" (base model {resolved!r})" if resolved != model_id.strip() else ""
        raise PriceNotFoundError(
            f"No price is known for model {model_id!r}{via} in {self.source}, which lists "
            f"{len(self._prices)} models; add it under 'models:' there or in a copy passed as the prices file."
        )

    def cost(self, model_id: str, input_tokens: int, output_tokens: int, mode: str) -> float:
        """USD for the tokens in ``mode`` ("batch" or "on_demand"): tokens / 1,000 x price."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError("Token counts cannot be negative.")
        input_price, output_price = self.price(model_id).per_1000(mode)
        unit = TOKENS_PER_PRICE_UNIT
        return input_tokens / unit * input_price + output_tokens / unit * output_price


def tokens_for_chars(chars: int) -> int:
    """Heuristic token count of ``chars`` characters of text: about 4 a token, rounded up."""
    return math.ceil(max(chars, 0) / CHARS_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """Heuristic token count: about 4 characters a token, rounded up (0 for empty text, else at least 1)."""
    return tokens_for_chars(len(text))


@dataclass(frozen=True)
class CostEstimate:
    """What a run costs in batch and on demand, in total and per 1,000 records, sending ``texts_per_request`` distinct
    texts in each of its ``requests`` model requests."""

    records: int
    distinct_texts: int
    input_tokens: int
    output_tokens: int
    batch_usd: float
    on_demand_usd: float
    per_1000_batch_usd: float
    per_1000_on_demand_usd: float
    texts_per_request: int = 1
    requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; amounts rounded to 6 decimals (millionths of a dollar)."""
        return {k: round(v, _USD_DIGITS) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _per_1000(usd: float, records: int) -> float:
    return usd * 1000 / records if records else 0.0


def estimate_cost(
    prices: PriceTable,
    model_id: str,
    input_tokens: int,
    output_tokens: int,
    records: int,
    distinct_texts: int,
    texts_per_request: int = 1,
    requests: int | None = None,
) -> CostEstimate:
    """The cost of the tokens with ``model_id``; per-1,000 figures divide by ``records`` (all rows). ``requests``:
    the model requests the texts make (default: one per distinct text)."""
    batch = prices.cost(model_id, input_tokens, output_tokens, "batch")
    on_demand = prices.cost(model_id, input_tokens, output_tokens, "on_demand")
    return CostEstimate(
        records=records,
        distinct_texts=distinct_texts,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        batch_usd=batch,
        on_demand_usd=on_demand,
        per_1000_batch_usd=_per_1000(batch, records),
        per_1000_on_demand_usd=_per_1000(on_demand, records),
        texts_per_request=texts_per_request,
        requests=distinct_texts if requests is None else requests,
    )
