"""Reading ``template.yaml`` and rendering it to CloudFormation offline with aws-sam-translator.

Shared by the local deploy and the template tests: CloudFormation's short-form tags (``!Ref``, ``!Sub``, ...)
become their long form, local code paths become S3 locations (the translator insists on them), and the
managed-policy lookup is refused, so rendering never needs the network.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml


class _TemplateLoader(yaml.SafeLoader):
    """Safe YAML loader that turns CloudFormation's short-form tags into their long form (``!Ref x`` → Ref)."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    template = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)
    if not isinstance(template, dict):
        raise ValueError(f"{path} is not a template")
    return template


def _no_managed_policy_lookup() -> dict[str, str]:
    # Stands in for the IAM ListPolicies call: the translator's bundled map must already know every managed
    # policy the template uses, so rendering never needs the network.
    raise RuntimeError("the template needs a managed policy the translator does not bundle")


def render_template(
    sam_template: dict[str, Any], artifacts_bucket: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """The template as CloudFormation after the SAM transform; code and definitions point at ``artifacts_bucket``
    (``<logical id>.zip`` for code, ``<logical id>.asl.json`` for state machine definitions)."""
    from samtranslator.parser.parser import Parser  # noqa: PLC0415 - a heavy import, only for deploys and tests
    from samtranslator.translator.translator import Translator  # noqa: PLC0415

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(sam_template)
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = f"s3://{artifacts_bucket}/{logical_id}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = f"s3://{artifacts_bucket}/{logical_id}.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            properties["DefinitionUri"] = {"Bucket": artifacts_bucket, "Key": f"{logical_id}.asl.json"}
    translator = Translator(managed_policy_map=None, sam_parser=Parser())
    output = translator.translate(
        sam_template=template,
        parameter_values=dict(parameters or {}),
        get_managed_policy_map=_no_managed_policy_lookup,
    )
    assert isinstance(output, dict)
    return output
