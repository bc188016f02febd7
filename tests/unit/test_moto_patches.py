"""The start-up check of every patch of moto: a target that moved or changed its signature stops the runtime."""

from __future__ import annotations

import types

import pytest

from batch_classifier_local.moto_patches.common import require


class Target:
    def method(self, env: object, wait_seconds: int) -> None: ...


def test_a_target_with_the_expected_parameters_is_returned() -> None:
    assert require(Target, "method", ("self", "env")) is Target.method
    module = types.SimpleNamespace(send_event=lambda account_id, event_name: None)
    assert require(module, "send_event", ("account_id", "event_name")) is module.send_event


def test_a_missing_target_stops_the_runtime() -> None:
    with pytest.raises(RuntimeError, match=r"patches moto's Target\.gone, which this moto does not have"):
        require(Target, "gone", ("self",))


def test_a_changed_signature_stops_the_runtime() -> None:
    with pytest.raises(RuntimeError, match=r"Target\.method\('self', 'seconds'\), but this moto has"):
        require(Target, "method", ("self", "seconds"))
