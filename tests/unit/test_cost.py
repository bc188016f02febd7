"""Tests of the price table, model-id resolution and cost estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_classifier.cost import (
    CostEstimate,
    ModelPrice,
    PriceTable,
    estimate_cost,
    estimate_tokens,
    resolve_model_id,
    tokens_for_chars,
)
from batch_classifier.errors import PriceFileError, PriceNotFoundError

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
REQUIRED = {
    HAIKU: (0.00025, 0.00125),
    "anthropic.claude-3-5-haiku-20241022-v1:0": (0.0008, 0.004),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": (0.003, 0.015),
    "anthropic.claude-3-5-sonnet-20241022-v2:0": (0.003, 0.015),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": (0.003, 0.015),
    "anthropic.claude-sonnet-4-20250514-v1:0": (0.003, 0.015),
    "amazon.nova-micro-v1:0": (0.000035, 0.00014),
    "amazon.nova-lite-v1:0": (0.00006, 0.00024),
    "amazon.nova-pro-v1:0": (0.0008, 0.0032),
    "meta.llama3-1-70b-instruct-v1:0": (0.00072, 0.00072),
    "mistral.mistral-large-2407-v1:0": (0.002, 0.006),
}


@pytest.fixture(scope="module")
def bundled() -> PriceTable:
    return PriceTable.load()


# --- the bundled table --------------------------------------------------------------------------------


def test_bundled_table_has_the_listed_on_demand_prices(bundled: PriceTable) -> None:
    for model_id, (input_price, output_price) in REQUIRED.items():
        price = bundled.price(model_id)
        assert price.model_id == model_id
        assert (price.on_demand_input, price.on_demand_output) == (input_price, output_price)


def test_bundled_batch_prices_are_half_of_on_demand(bundled: PriceTable) -> None:
    assert set(REQUIRED) <= set(bundled.model_ids)
    for model_id in bundled.model_ids:
        price = bundled.price(model_id)
        assert price.on_demand_input > 0 and price.on_demand_output > 0
        assert price.batch_input == pytest.approx(price.on_demand_input / 2, rel=1e-12), model_id
        assert price.batch_output == pytest.approx(price.on_demand_output / 2, rel=1e-12), model_id


def test_haiku_batch_prices_exactly(bundled: PriceTable) -> None:
    assert bundled.price(HAIKU) == ModelPrice(HAIKU, 0.00025, 0.00125, 0.000125, 0.000625)


# --- model ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (HAIKU, HAIKU),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("eu.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
        ("apac.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),
        ("  amazon.nova-micro-v1:0 ", "amazon.nova-micro-v1:0"),
        (f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}", HAIKU),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-pro-v1:0",
            "amazon.nova-pro-v1:0",
        ),
    ],
)
def test_resolve_model_id(given: str, expected: str) -> None:
    assert resolve_model_id(given) == expected


def test_profile_ids_and_arns_are_priced_as_the_base_model(bundled: PriceTable) -> None:
    base = bundled.price("anthropic.claude-3-5-haiku-20241022-v1:0")
    assert bundled.price("us.anthropic.claude-3-5-haiku-20241022-v1:0") == base
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    assert bundled.price(arn) == base


def test_unknown_model(bundled: PriceTable) -> None:
    with pytest.raises(PriceNotFoundError) as caught:
        bundled.price("us.acme.unknown-model-v1:0")
    message = str(caught.value)
    assert "us.acme.unknown-model-v1:0" in message
    assert "acme.unknown-model-v1:0'" in message  # the base model id it was looked up as
    assert "prices.yaml" in message
    assert f"{len(bundled.model_ids)} models" in message


# --- costs --------------------------------------------------------------------------------------------


def test_cost_is_tokens_per_thousand_times_price(bundled: PriceTable) -> None:
    # 1,000,000 input x 0.000125 / 1,000 + 200,000 output x 0.000625 / 1,000 = 0.125 + 0.125
    assert bundled.cost(HAIKU, 1_000_000, 200_000, "batch") == pytest.approx(0.25)
    assert bundled.cost(HAIKU, 1_000_000, 200_000, "on_demand") == pytest.approx(0.5)
    assert bundled.cost(HAIKU, 0, 0, "batch") == 0.0


def test_cost_rejects_bad_mode_and_negative_tokens(bundled: PriceTable) -> None:
    with pytest.raises(ValueError, match="batch, on_demand"):
        bundled.cost(HAIKU, 1, 1, "provisioned")
    with pytest.raises(ValueError, match="negative"):
        bundled.cost(HAIKU, -1, 1, "batch")


def test_estimate_cost_hand_computed(bundled: PriceTable) -> None:
    estimate = estimate_cost(bundled, HAIKU, 2_000_000, 100_000, records=4_000, distinct_texts=3_000)
    # batch: 2,000 x 0.000125 + 100 x 0.000625 = 0.25 + 0.0625; on demand twice that
    assert estimate.batch_usd == pytest.approx(0.3125)
    assert estimate.on_demand_usd == pytest.approx(0.625)
    assert estimate.per_1000_batch_usd == pytest.approx(0.078125)
    assert estimate.per_1000_on_demand_usd == pytest.approx(0.15625)
    assert estimate.to_dict() == {
        "records": 4_000,
        "distinct_texts": 3_000,
        "input_tokens": 2_000_000,
        "output_tokens": 100_000,
        "batch_usd": 0.3125,
        "on_demand_usd": 0.625,
        "per_1000_batch_usd": 0.078125,
        "per_1000_on_demand_usd": 0.15625,
        "texts_per_request": 1,
        "requests": 3_000,  # one request per distinct text unless told otherwise
    }


def test_estimate_cost_with_profile_id_and_no_records(bundled: PriceTable) -> None:
    estimate = estimate_cost(bundled, "us.amazon.nova-micro-v1:0", 1_000, 1_000, 0, 0)
    assert isinstance(estimate, CostEstimate)
    assert estimate.on_demand_usd == pytest.approx(0.000035 + 0.00014)
    assert estimate.batch_usd == pytest.approx((0.000035 + 0.00014) / 2)
    assert (estimate.per_1000_batch_usd, estimate.per_1000_on_demand_usd) == (0.0, 0.0)


def test_estimate_cost_unknown_model(bundled: PriceTable) -> None:
    with pytest.raises(PriceNotFoundError):
        estimate_cost(bundled, "nobody.model", 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100), ("x" * 401, 101)]
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens
    assert tokens_for_chars(len(text)) == tokens


# --- custom prices files ------------------------------------------------------------------------------

CUSTOM = """\
models:
  acme.model-v1:0:
    on_demand: {input: 0.01, output: 0.02}
    batch: {input: 0.004, output: 0.01}
  us.acme.special-v1:0:
    on_demand: {input: 1, output: 2}
    batch: {input: 1, output: 2}
"""


def test_custom_prices_file(tmp_path: Path) -> None:
    path = tmp_path / "my-prices.yaml"
    path.write_text(CUSTOM, encoding="utf-8")
    table = PriceTable.load(path)
    assert table.model_ids == ("acme.model-v1:0", "us.acme.special-v1:0")
    assert table.price("eu.acme.model-v1:0") == ModelPrice("acme.model-v1:0", 0.01, 0.02, 0.004, 0.01)
    assert table.price("us.acme.special-v1:0").batch_output == 2.0  # an exact key wins over resolution
    assert table.cost("acme.model-v1:0", 500, 2_000, "batch") == pytest.approx(0.002 + 0.02)
    with pytest.raises(PriceNotFoundError, match=r"'my-prices\.yaml'.*2 models"):
        table.price(HAIKU)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models: [1, 2", "not valid YAML"),
        ("prices: {}", "no 'models:'"),
        ("models: {}", "no 'models:'"),
        ("- a\n- b\n", "no 'models:'"),
        ("models:\n  m:\n    on_demand: {input: 1, output: 2}\n", r"models\.m\.batch\.input"),
        ("models:\n  m:\n    on_demand: {input: 1, output: -2}\n    batch: {input: 1, output: 1}\n", "output"),
        ("models:\n  m:\n    on_demand: {input: true, output: 2}\n    batch: {input: 1, output: 1}\n", "True"),
        ("models:\n  m:\n    on_demand: {input: '1', output: 2}\n    batch: {input: 1, output: 1}\n", "'1'"),
    ],
)
def test_invalid_prices_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PriceFileError, match=fragment):
        PriceTable.load(path)


def test_missing_prices_file(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=r"absent\.yaml"):
        PriceTable.load(tmp_path / "absent.yaml")
