"""The start-up check of every patch of moto: a target that moved or changed its signature stops the runtime."""

from __future__ import annotations

import types

import pytest
from moto import backends
from moto.awslambda.models import LambdaFunction
from moto.s3.models import FakeKey, FakeMultipart
from moto.stepfunctions.responses import StepFunctionResponse

from batch_classifier_local import moto_patches
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


def test_install_then_uninstall_leaves_moto_as_it_was() -> None:

    before = {
        "invoke": LambdaFunction.__dict__["invoke"],
        "value": FakeKey.__dict__["value"],
        "complete": FakeMultipart.__dict__["complete"],
        "describe": StepFunctionResponse.__dict__["describe_execution"],
    }
    assert "redrive_execution" not in StepFunctionResponse.__dict__
    moto_patches.install()
    try:
        assert LambdaFunction.__dict__["invoke"] is not before["invoke"]
        assert "redrive_execution" in StepFunctionResponse.__dict__
    finally:
        moto_patches.uninstall()
    after = {
        "invoke": LambdaFunction.__dict__["invoke"],
        "value": FakeKey.__dict__["value"],
        "complete": FakeMultipart.__dict__["complete"],
        "describe": StepFunctionResponse.__dict__["describe_execution"],
    }
    assert after == before and "redrive_execution" not in StepFunctionResponse.__dict__


def test_a_failed_check_undoes_the_patches_made_before_it(monkeypatch: pytest.MonkeyPatch) -> None:

    original = LambdaFunction.__dict__["invoke"]

    def broken() -> None:
        raise RuntimeError("this moto does not have what the redrive patch needs")

    monkeypatch.setattr(moto_patches.redrive, "patch", broken)
    with pytest.raises(RuntimeError, match="redrive patch"):
        moto_patches.install()
    assert LambdaFunction.__dict__["invoke"] is original and not moto_patches._PATCHED


def test_the_server_lists_moto_s_services_once() -> None:
    listed = list(backends.list_of_moto_modules())
    original = backends.list_of_moto_modules
    moto_patches.install()
    try:
        assert backends.list_of_moto_modules is not original
        assert list(backends.list_of_moto_modules()) == listed and "s3" in listed and "stepfunctions" in listed
        assert backends.list_of_moto_modules() is backends.list_of_moto_modules()  # no listing of the folder
    finally:
        moto_patches.uninstall()
    assert backends.list_of_moto_modules is original
