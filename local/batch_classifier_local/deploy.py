"""The local deploy: ``template.yaml`` rendered with aws-sam-translator and created as a stack in moto, then
corrected where moto falls short: each state machine's ASL substituted and set (moto ignores
``DefinitionSubstitutions``), each function's spec for the worker pool, and the Glue and Athena resources that
moto's CloudFormation skips. :class:`~batch_classifier_local.runtime.LocalRuntime` calls :func:`deploy_stack`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .template import load_template, render_template
from .workers import FunctionSpec

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "batch-classifier-local"
ARTIFACTS_BUCKET = "batch-classifier-local-artifacts"
# Parameters of the local stack: tiny waits still poll often enough to feel live.
LOCAL_PARAMETERS = {"Stage": "sandbox", "PollMinSeconds": "60", "PollMaxSeconds": "900"}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass
class Stack:
    """What the local deploy produced: outputs, and each function's spec by its physical name."""

    outputs: dict[str, str]
    functions: dict[str, FunctionSpec]
    state_machine_arn: str
    workflow: list[str] = field(default_factory=list)  # the functions the state machine calls, in its order

    @property
    def customer_bucket(self) -> str:
        return self.outputs["CustomerBucketName"]

    @property
    def internal_bucket(self) -> str:
        return self.outputs["InternalBucketName"]


class ParameterError(ValueError):
    """A parameter override the template does not accept."""


def check_parameters(template: dict[str, Any], overrides: dict[str, str]) -> None:
    """Refuse, in one sentence, an override CloudFormation would refuse: an unknown name, a value outside the
    parameter's AllowedValues or AllowedPattern, or a Number outside MinValue/MaxValue."""
    declared: dict[str, Any] = template.get("Parameters") or {}
    for name, value in overrides.items():
        spec = declared.get(name)
        if spec is None:
            raise ParameterError(
                f"template.yaml has no parameter {name!r}; its parameters are: {', '.join(sorted(declared))}."
            )
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise ParameterError(f"{name} must be one of {', '.join(str(v) for v in allowed)}, not {value!r}.")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise ParameterError(f"{name} must match {pattern}, not {value!r}.")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                raise ParameterError(f"{name} is a Number, not {value!r}.") from None
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if (low is not None and number < float(low)) or (high is not None and number > float(high)):
                if low is not None and high is not None:
                    bounds = f"from {low} to {high}"
                else:
                    bounds = f"at least {low}" if low is not None else f"at most {high}"
                raise ParameterError(f"{name} must be {bounds}, not {value}.")


def deploy_stack(
    root: Path, client: Callable[[str], Any], overrides: dict[str, str], environment: dict[str, str]
) -> Stack:
    """Create the stack from ``root``'s template.yaml with ``client``'s AWS (moto) and correct what moto leaves
    out; ``overrides`` are the parameter overrides, ``environment`` what each function needs to reach it."""
    sam = load_template(root / "template.yaml")
    check_parameters(sam, overrides)
    parameters = {**LOCAL_PARAMETERS, **overrides}
    rendered = render_template(sam, ARTIFACTS_BUCKET, parameters)
    s3 = client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    placeholder = _placeholder_zip()
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion"}:
            s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{logical_id}.zip", Body=placeholder)
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            definition = (root / resource["Properties"]["DefinitionUri"]).read_bytes()
            s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{logical_id}.asl.json", Body=definition)
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(rendered),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cloudformation.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
        if r.get("LogicalResourceId")
    }
    state_machine_arn, definition = _set_definitions(root, client, sam, rendered, physical)
    s3.put_bucket_notification_configuration(
        Bucket=outputs["CustomerBucketName"], NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    _create_analytics(client, rendered, outputs)
    functions = _function_specs(root, client, sam, physical, environment)
    called = {name: definition.find(f':function:{name}"') for name in functions}
    workflow = sorted((name for name, at in called.items() if at >= 0), key=called.__getitem__)
    return Stack(outputs=outputs, functions=functions, state_machine_arn=state_machine_arn, workflow=workflow)


def _set_definitions(
    root: Path,
    client: Callable[[str], Any],
    sam: dict[str, Any],
    rendered: dict[str, Any],
    physical: dict[str, str],
) -> tuple[str, str]:
    """Substitute each state machine's ASL file and set it (moto keeps an empty definition); returns the (last)
    state machine's ARN and definition."""
    stepfunctions = client("stepfunctions")
    arn = definition = ""
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        properties = rendered["Resources"][logical_id]["Properties"]
        values = {name: _resolve(value, physical) for name, value in properties["DefinitionSubstitutions"].items()}
        text = (root / resource["Properties"]["DefinitionUri"]).read_text(encoding="utf-8")
        missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
        if missing:
            raise RuntimeError(f"the state machine uses substitutions the template does not define: {missing}")
        definition = _substitute(text, values)
        # moto's CloudFormation makes the state machine where executions do not run: make it again, with
        # the same name (so the same ARN the EventBridge rule targets), where they do.
        role = properties.get("RoleArn") or f"arn:aws:iam::{ACCOUNT}:role/{physical.get(logical_id + 'Role', 'local')}"
        created = stepfunctions.create_state_machine(
            name=physical[logical_id].rsplit(":", 1)[-1],
            definition=definition,
            roleArn=role if isinstance(role, str) else f"arn:aws:iam::{ACCOUNT}:role/local",
            type="STANDARD",
        )
        arn = created["stateMachineArn"]
    return arn, definition


def _resolve(value: Any, physical: dict[str, str]) -> str:
    """``Ref`` / ``Fn::GetAtt`` of the substitutions, as moto named the resources."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return physical[value["Ref"]]
    logical, attribute = value["Fn::GetAtt"]
    name = physical[logical]
    if attribute == "Arn" and not name.startswith("arn:"):
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return name


def _function_specs(
    root: Path,
    client: Callable[[str], Any],
    sam: dict[str, Any],
    physical: dict[str, str],
    runtime_environment: dict[str, str],
) -> dict[str, FunctionSpec]:
    lambda_ = client("lambda")
    globals_ = sam.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        name = physical[logical_id]
        config = lambda_.get_function_configuration(FunctionName=name)
        environment = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
        environment.update(runtime_environment)
        environment["POWERTOOLS_TRACE_DISABLED"] = "1"  # no X-Ray daemon here
        properties = resource["Properties"]
        specs[name] = FunctionSpec(
            name=name,
            app=root / properties["CodeUri"] / "app.py",
            environment=environment,
            timeout=int(properties.get("Timeout", globals_.get("Timeout", 3))),
            memory=int(properties.get("MemorySize", globals_.get("MemorySize", 128))),
        )
    return specs


def _create_analytics(client: Callable[[str], Any], rendered: dict[str, Any], outputs: dict[str, str]) -> None:
    """The Glue database and table and the Athena workgroup, which moto's CloudFormation skips."""
    glue, athena = client("glue"), client("athena")
    for resource in rendered["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Glue::Database":
            name = outputs.get("AnalyticsDatabaseName", "batch_classifier")
            glue.create_database(DatabaseInput={"Name": name, "Description": "local analytics"})
    for resource in rendered["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Glue::Table":
            table = _plain(properties["TableInput"], outputs)
            glue.create_table(DatabaseName=outputs.get("AnalyticsDatabaseName", "batch_classifier"), TableInput=table)
        elif resource["Type"] == "AWS::Athena::WorkGroup":
            athena.create_work_group(Name=outputs.get("AthenaWorkGroupName", "batch-classifier-local"))


def _substitute(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda found: values[found[1]], text)


def _plain(value: Any, outputs: dict[str, str]) -> Any:
    """A CloudFormation value with ``Fn::Sub`` and ``Ref`` resolved well enough for local Glue tables."""
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            text = text.replace("${InternalBucket}", outputs.get("InternalBucketName", ""))
            return re.sub(r"\$\{[^}]+\}", "", text)
        if "Ref" in value:
            return outputs.get(value["Ref"], value["Ref"])
        return {k: _plain(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, outputs) for v in value]
    return value


def _placeholder_zip() -> bytes:
    """Code for moto's function records; the handlers themselves run from the working tree."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "The local runtime runs the handler from functions/ in the working tree.\n")
    return buffer.getvalue()
