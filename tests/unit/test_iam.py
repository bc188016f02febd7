"""Every AWS call each function's code can make, against the IAM actions its policy allows, both ways.

moto does not enforce IAM, so a missing grant shows only on AWS (AccessDenied in the middle of a paid run) and an
unused one never shows at all. This test reads the code instead of running it:

1. From each function's handler (``functions/<name>/app.py``) it follows, with ``ast``, the functions and methods
   of the shared package the handler can reach: a call or reference to a name imported from the package, a method
   called by name on any object (duck typing: ``store.update_run(...)`` reaches ``StatusStore.update_run``), and,
   for a class that is instantiated, its Python protocol methods (``write``, ``close``, ``__exit__``, ...), which
   ``io`` wrappers and ``with`` call for it.
2. In what it reached it collects the boto3 calls (``s3.put_object``, ``self._table.update_item``, paginators) and
   turns them into IAM actions with the explicit table ``CALLS``; a boto3 operation missing from the table fails
   the test, so no call escapes it.
3. S3 calls are tied to a bucket and key prefix where the code says so at a call site: an argument
   ``settings.internal_bucket`` (or a local bound to it) ties the S3 calls reachable from that call to the
   internal bucket, a key built by ``RunFiles`` to ``runs/``, and so on (``bucket_of``, ``PREFIX_MARKERS``).
4. It compares that with the statements of the function's role as CloudFormation gets them (the SAM template
   rendered offline, so SAM policy templates count as what they expand to): an action the code needs that no
   statement grants on the right resource fails, and so does a granted action (on a bucket and prefix) that no
   code path of the function uses, unless ``JUSTIFIED_GRANTS`` says why it is needed all the same.

The analysis is approximate (it over-reaches rather than under-reaches); where it over-reaches for a known reason,
``NOT_REACHED`` says so. ``test_a_missing_grant_fails`` and ``test_an_unused_grant_fails`` show that it catches a
real mismatch.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from batch_classifier_local.template import load_template, render_template

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "batch_classifier"
PACKAGE_DIR = ROOT / "layers" / "common" / PACKAGE
FUNCTIONS_DIR = ROOT / "functions"

# ---------------------------------------------------------------------------------------------------------------
# The tables: boto3 operations → IAM actions, and where each action must be granted
# ---------------------------------------------------------------------------------------------------------------

#: The IAM actions each boto3 operation (client method or DynamoDB Table method) needs.
CALLS: dict[str, tuple[str, ...]] = {
    # S3 (a multipart upload is authorised as s3:PutObject, part by part)
    "get_object": ("s3:GetObject",),
    "head_object": ("s3:GetObject",),
    "put_object": ("s3:PutObject",),
    "create_multipart_upload": ("s3:PutObject",),
    "upload_part": ("s3:PutObject",),
    "complete_multipart_upload": ("s3:PutObject",),
    "upload_part_copy": ("s3:GetObject", "s3:PutObject"),
    "copy_object": ("s3:GetObject", "s3:PutObject"),
    "abort_multipart_upload": ("s3:AbortMultipartUpload",),
    "list_parts": ("s3:ListMultipartUploadParts",),
    "delete_object": ("s3:DeleteObject",),
    "delete_objects": ("s3:DeleteObject",),
    "list_objects_v2": ("s3:ListBucket",),
    "list_objects": ("s3:ListBucket",),
    # DynamoDB (client and Table resource)
    "get_item": ("dynamodb:GetItem",),
    "put_item": ("dynamodb:PutItem",),
    "update_item": ("dynamodb:UpdateItem",),
    "delete_item": ("dynamodb:DeleteItem",),
    "query": ("dynamodb:Query",),
    "scan": ("dynamodb:Scan",),
    "batch_get_item": ("dynamodb:BatchGetItem",),
    "batch_write_item": ("dynamodb:BatchWriteItem",),
    "batch_writer": ("dynamodb:BatchWriteItem",),
    # SNS
    "publish": ("sns:Publish",),
    # Bedrock batch inference (a job is created with a role the caller passes to Bedrock)
    "create_model_invocation_job": ("bedrock:CreateModelInvocationJob", "iam:PassRole"),
    "get_model_invocation_job": ("bedrock:GetModelInvocationJob",),
    "list_model_invocation_jobs": ("bedrock:ListModelInvocationJobs",),
    "stop_model_invocation_job": ("bedrock:StopModelInvocationJob",),
    # Bedrock runtime (Converse is authorised as InvokeModel)
    "invoke_model": ("bedrock:InvokeModel",),
    "converse": ("bedrock:InvokeModel",),
    "invoke_model_with_response_stream": ("bedrock:InvokeModelWithResponseStream",),
    "converse_stream": ("bedrock:InvokeModelWithResponseStream",),
    # Step Functions
    "start_execution": ("states:StartExecution",),
    "describe_execution": ("states:DescribeExecution",),
}

#: Where a non-S3 action must be granted: texts the statements' resources (as JSON) contain, one grant for each
#: (a batch job is authorised on the job and on the model or inference profile it runs).
RESOURCE_OF: dict[str, tuple[str, ...]] = {
    "dynamodb:": ('"RunsTable"',),
    "sns:Publish": ('"RunEventsTopic"',),
    "bedrock:CreateModelInvocationJob": (":model-invocation-job/", ":foundation-model/", ":inference-profile/"),
    "bedrock:GetModelInvocationJob": (":model-invocation-job/",),
    "bedrock:StopModelInvocationJob": (":model-invocation-job/",),
    "bedrock:ListModelInvocationJobs": ('"*"',),  # a List action has no resource to scope to
    "bedrock:InvokeModel": (":foundation-model/", ":inference-profile/"),
    "iam:PassRole": ('"BedrockBatchRole"',),
}

BUCKETS = ("CustomerBucket", "InternalBucket")

#: Key prefixes by what the key expression (or the locals it is built from) mentions, first match wins.
PREFIX_MARKERS: tuple[tuple[str, str], ...] = (
    (r"\banalytics_key\(", "analytics/"),
    (r"\boutput_prefix\(", "output_data/"),
    (r"\bTASKS_PREFIX\b", "config/tasks/"),
    (r"\bcontrol_key\(", "config/controls/"),
    (r"\brun\.key\b", "input_data/"),
    (r"\bRunFiles\(|\bfiles\.|\bresults_key\(|\bretries_key\(|\btexts_key\b|\bplan\.key\b", "runs/"),
)
#: The argument of a call that holds the key (or key prefix), when it is passed by keyword.
_KEY_KEYWORDS = frozenset({"key", "Key", "prefix", "Prefix"})

#: Grants no call of the code makes, and why each is needed all the same: (function, action) → reason.
JUSTIFIED_GRANTS: dict[tuple[str, str], str] = {
    # Without s3:ListBucket, S3 answers a GET of a missing key with AccessDenied instead of NoSuchKey, and
    # load_run_task could no longer tell "no user task of that name" (use the bundled one) from a refusal.
    ("ConvertInputFunction", "s3:ListBucket"): "NoSuchKey for a missing config/tasks/<task>.yaml or control file",
}

#: S3 actions the analysis sees but the code never makes, and why: (function, action, bucket, prefix) → reason.
NOT_REACHED: dict[tuple[str, str, str, str], str] = {
    # FinalizeRun writes the analytics Parquet through the same S3Target as the outputs, and an S3Target can read
    # its object back and remove it (a Parquet file whose inferred column types widen is rewritten). The analytics
    # file has a fixed schema (ANALYTICS_SCHEMA): it is never read back or removed.
    ("FinalizeRunFunction", "s3:GetObject", "InternalBucket", "analytics/"): "fixed Parquet schema",
    ("FinalizeRunFunction", "s3:DeleteObject", "InternalBucket", "analytics/"): "fixed Parquet schema",
}

#: Expressions that name a bucket at a call site (see ``bucket_of``).
_UPLOAD_NAMES = frozenset({"run", "upload", "event", "start"})  # the upload's bucket is the customer bucket
# Names of Python's own protocol and container methods: a package method of one of these names is reached only
# through an instance of its class (io wrappers, ``with`` and ``for`` call them), not by name from anywhere.
_GENERIC = frozenset(
    name
    for kind in (io.BufferedWriter, io.BufferedReader, io.TextIOWrapper, io.RawIOBase, dict, list, set, str, bytes)
    for name in dir(kind)
)


# ---------------------------------------------------------------------------------------------------------------
# The code: modules, their functions, classes and imports
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local name → (module, name)


@dataclass(frozen=True)
class Unit:
    """A function or method of a module (``qualname`` ``f`` or ``Class.method``)."""

    module: str
    qualname: str


@dataclass(frozen=True)
class Tag:
    """An S3 call site that names its bucket: the S3 operations reachable from it touch this bucket (and prefix)."""

    bucket: str
    prefix: str | None
    operations: frozenset[str]


@dataclass
class Reach:
    """What a handler can reach: units, boto3 operations, and the S3 call sites that name their bucket."""

    units: set[Unit] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)
    tags: list[Tag] = field(default_factory=list)


def _parse(name: str, path: Path) -> Module:
    module = Module(name=name, tree=ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef):
            module.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            module.classes[node.name] = node
    package_modules = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    for node in ast.walk(module.tree):  # imports inside functions count too
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _import_source(node)
        if not source.startswith(PACKAGE):
            continue
        for alias in node.names:
            local = alias.asname or alias.name
            if source == PACKAGE and alias.name in package_modules:
                module.imports[local] = (f"{PACKAGE}.{alias.name}", None)
            else:
                module.imports[local] = (source, alias.name)
    return module


def _import_source(node: ast.ImportFrom) -> str:
    """The absolute module an import reads from (relative imports are the package's: it is one level deep)."""
    if not node.level:
        return node.module or ""
    return PACKAGE if node.module is None else f"{PACKAGE}.{node.module}"


@cache
def modules() -> dict[str, Module]:
    found = {f"{PACKAGE}.{path.stem}": _parse(f"{PACKAGE}.{path.stem}", path) for path in PACKAGE_DIR.glob("*.py")}
    for app in FUNCTIONS_DIR.glob("*/app.py"):
        name = f"functions.{app.parent.name}"
        found[name] = _parse(name, app)
    return found


@cache
def _methods_by_name() -> dict[str, set[Unit]]:
    """Every method of every package class, by name (what ``obj.name(...)`` may call)."""
    by_name: dict[str, set[Unit]] = {}
    for module in modules().values():
        for cls in module.classes.values():
            for node in cls.body:
                if isinstance(node, ast.FunctionDef):
                    by_name.setdefault(node.name, set()).add(Unit(module.name, f"{cls.name}.{node.name}"))
    return by_name


def _node_of(unit: Unit) -> ast.FunctionDef:
    module = modules()[unit.module]
    if "." not in unit.qualname:
        return module.functions[unit.qualname]
    cls_name, method = unit.qualname.split(".", 1)
    for node in module.classes[cls_name].body:
        if isinstance(node, ast.FunctionDef) and node.name == method:
            return node
    raise KeyError(unit)


def _is_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id in {"property", "cached_property"} for d in node.decorator_list)


def _class_units(module_name: str, cls_name: str, *, protocol_only: bool) -> set[Unit]:
    """The methods of a package class and of its package base classes (only the protocol ones, or all)."""
    module = modules()[module_name]
    cls = module.classes[cls_name]
    units = {
        Unit(module_name, f"{cls_name}.{node.name}")
        for node in cls.body
        if isinstance(node, ast.FunctionDef)
        and (not protocol_only or node.name in _GENERIC or node.name.startswith("__"))
    }
    for base in cls.bases:
        if isinstance(base, ast.Name):
            resolved = _resolve_name(module, base.id)
            if resolved is not None and resolved[0] == "class":
                units |= _class_units(resolved[1], resolved[2], protocol_only=protocol_only)
    return units


def _resolve_name(module: Module, name: str) -> tuple[str, str, str] | None:
    """``("function" | "class" | "module", module, name)`` for a name of ``module``, or None (not the package's)."""
    if name in module.functions:
        return "function", module.name, name
    if name in module.classes:
        return "class", module.name, name
    if name in module.imports:
        source, attr = module.imports[name]
        if attr is None:
            return ("module", source, "") if source in modules() else None
        target = modules().get(source)
        if target is None:
            return None
        if attr in target.functions or attr in target.classes or attr in target.imports:
            return _resolve_name(target, attr)
        if f"{source}.{attr}" in modules():
            return "module", f"{source}.{attr}", ""
    return None


def _resolve_expr(module: Module, node: ast.expr) -> tuple[str, str, str] | None:
    """What a Name, or an attribute of a package module (``aws.status_store``), refers to."""
    if isinstance(node, ast.Name):
        return _resolve_name(module, node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        base = _resolve_name(module, node.value.id)
        if base is not None and base[0] == "module":
            return _resolve_name(modules()[base[1]], node.attr)
    return None


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without annotations (a type named in an annotation is not a use of it)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for name, value in ast.iter_fields(current):
            if name in {"annotation", "returns"}:
                continue
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST))


def _operation_of(node: ast.AST) -> str | None:
    """The boto3 operation an attribute names (``x.put_object``), or a paginator's (``get_paginator("...")``)."""
    if isinstance(node, ast.Attribute) and node.attr in CALLS:
        return node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get_paginator"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    return None


def _callees(module: Module, node: ast.AST) -> set[Unit]:
    """The units a node refers to: package functions, instantiated classes' protocol methods, methods by name."""
    found: set[Unit] = set()
    resolved = _resolve_expr(module, node) if isinstance(node, ast.Name | ast.Attribute) else None
    if resolved is not None:
        kind, where, name = resolved
        if kind == "function":
            found.add(Unit(where, name))
        elif kind == "class":
            found |= _class_units(where, name, protocol_only=True)
    elif isinstance(node, ast.Attribute) and node.attr not in _GENERIC:
        for unit in _methods_by_name().get(node.attr, set()):
            if isinstance(node.ctx, ast.Load) and (_is_called(node) or _is_property(_node_of(unit))):
                found.add(unit)
    return found


def _is_called(node: ast.Attribute) -> bool:
    return getattr(node, "_called", False)


def _mark_calls(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node.func._called = True  # type: ignore[attr-defined]


# --- what a unit reaches (for the tags: everything, a class's methods included) ---------------------------------


@cache
def _direct(unit: Unit) -> tuple[frozenset[str], frozenset[Unit]]:
    """The operations a unit makes itself and the units it refers to."""
    module = modules()[unit.module]
    node = _node_of(unit)
    _mark_calls(node)
    operations: set[str] = set()
    callees: set[Unit] = set()
    for inner in _walk(node):
        operation = _operation_of(inner)
        if operation is not None:
            operations.add(operation)
        callees |= _callees(module, inner)
    return frozenset(operations), frozenset(callees - {unit})


def _closure(start: set[Unit]) -> tuple[set[Unit], set[str]]:
    seen: set[Unit] = set()
    operations: set[str] = set()
    todo = list(start)
    while todo:
        unit = todo.pop()
        if unit in seen:
            continue
        seen.add(unit)
        made, callees = _direct(unit)
        operations |= made
        todo.extend(callees - seen)
    return seen, operations


def _call_summary(module: Module, call: ast.Call) -> frozenset[str]:
    """The S3 operations reachable from a call (for a class: from any of its methods, as the object is used)."""
    operation = _operation_of(call.func) or _operation_of(call)
    if operation is not None:
        return frozenset({operation})
    start: set[Unit] = set()
    resolved = _resolve_expr(module, call.func) if isinstance(call.func, ast.Name | ast.Attribute) else None
    if resolved is not None and resolved[0] == "class":
        start = _class_units(resolved[1], resolved[2], protocol_only=False)
    else:
        start = _callees(module, call.func)
    return frozenset(_closure(start)[1])


# --- the bucket and prefix a call site names -------------------------------------------------------------------


def bucket_of(node: ast.expr, assigned: dict[str, ast.expr]) -> str | None:
    """The template bucket an expression names: ``settings.internal_bucket``, ``plan.bucket`` (a round's plan is
    in the internal bucket), ``run.bucket`` (the upload's: the customer bucket), or a local bound to one."""
    if isinstance(node, ast.Attribute):
        if node.attr == "internal_bucket":
            return "InternalBucket"
        if node.attr == "customer_bucket":
            return "CustomerBucket"
        if node.attr == "bucket" and isinstance(node.value, ast.Name):
            if node.value.id in _UPLOAD_NAMES:
                return "CustomerBucket"
            if node.value.id == "plan":
                return "InternalBucket"
    if isinstance(node, ast.Name) and node.id in assigned:
        return bucket_of(assigned[node.id], {})
    return None


def _assignments(function: ast.FunctionDef) -> dict[str, ast.expr]:
    """Locals of a function and what they are bound to: ``x = ...``, ``for x in ...`` (comprehensions too),
    ``with ... as x`` (the last binding of a name wins)."""
    bound: dict[str, ast.expr] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            bound[node.targets[0].id] = node.value
        elif isinstance(node, ast.For | ast.comprehension) and isinstance(node.target, ast.Name):
            bound[node.target.id] = node.iter
        elif isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            bound[node.optional_vars.id] = node.context_expr
    return bound


def _expression_text(node: ast.expr, assigned: dict[str, ast.expr], depth: int = 3) -> str:
    """The source of an expression and of the locals it is built from."""
    text = ast.unparse(node)
    if depth:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name) and inner.id in assigned and assigned[inner.id] is not node:
                text += " " + _expression_text(assigned[inner.id], assigned, depth - 1)
    return text


def prefix_of(node: ast.expr | None, assigned: dict[str, ast.expr]) -> str | None:
    """The key prefix a key expression names (see ``PREFIX_MARKERS``), or None when it does not say."""
    if node is None:
        return None
    text = _expression_text(node, assigned)
    return next((prefix for marker, prefix in PREFIX_MARKERS if re.search(marker, text)), None)


def _key_argument(call: ast.Call, bucket: ast.expr) -> ast.expr | None:
    """The key of a call that names a bucket: the positional argument after the bucket, or ``key=``/``Key=``."""
    for keyword in call.keywords:
        if keyword.arg in _KEY_KEYWORDS:
            return keyword.value
    if bucket in call.args:
        position = call.args.index(bucket) + 1
        if position < len(call.args):
            return call.args[position]
    return None


def _tags(unit: Unit) -> list[Tag]:
    module = modules()[unit.module]
    function = _node_of(unit)
    assigned = _assignments(function)
    tags = []
    for node in _walk(function):
        if not isinstance(node, ast.Call):
            continue
        arguments = [*node.args, *(k.value for k in node.keywords)]
        buckets = [(arg, bucket_of(arg, assigned)) for arg in arguments]
        named = [(arg, bucket) for arg, bucket in buckets if bucket is not None]
        if not named:
            continue
        summary = _call_summary(module, node)
        s3 = {op for op in summary if any(a.startswith("s3:") for a in CALLS.get(op, ()))}
        if not s3:
            continue
        if any(k.arg == "version_id" for k in node.keywords) and "get_object" in s3:
            s3.add("get_object_version")  # an object read by its version needs s3:GetObjectVersion
        for arg, bucket in named:
            prefix = prefix_of(_key_argument(node, arg), assigned)
            tags.append(Tag(bucket=bucket, prefix=prefix, operations=frozenset(s3)))
    return tags


def reach(function: str) -> Reach:
    """What the handler of ``functions/<function>/app.py`` can reach."""
    handler = Unit(f"functions.{function}", "lambda_handler")
    units, operations = _closure({handler})
    result = Reach(units=units, operations=operations)
    for unit in units:
        result.tags.extend(_tags(unit))
    return result


# ---------------------------------------------------------------------------------------------------------------
# What the code needs, what the policy grants
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """An action the code needs: on a bucket and key prefix (S3; None when the code does not say), or on a
    resource whose JSON contains ``resource`` (see ``RESOURCE_OF``)."""

    action: str
    bucket: str | None = None
    prefix: str | None = None
    resource: str | None = None


def _resources_of(action: str) -> tuple[str, ...]:
    return next((markers for key, markers in RESOURCE_OF.items() if action.startswith(key)), ())


def _actions_of(operation: str) -> tuple[str, ...]:
    if operation == "get_object_version":
        return ("s3:GetObjectVersion",)
    return CALLS[operation]


def needs(function: str, found: Reach) -> set[Need]:
    """The actions a function's code needs; an S3 action on the bucket (and prefix) its call sites name, or on
    any bucket when no call site names one."""
    wanted: set[Need] = set()
    tagged: set[str] = set()
    for tag in found.tags:
        for operation in tag.operations:
            for action in _actions_of(operation):
                if (function, action, tag.bucket, tag.prefix or "") not in NOT_REACHED:
                    wanted.add(Need(action, tag.bucket, tag.prefix))
                tagged.add(action)
    for operation in found.operations:
        for action in _actions_of(operation):
            if not action.startswith("s3:"):
                wanted.update(Need(action, resource=marker) for marker in _resources_of(action) or (None,))
            elif action not in tagged:
                wanted.add(Need(action, None, None))
    return wanted


@dataclass(frozen=True)
class Grant:
    """One action of one Allow statement on one resource (S3: its bucket and key pattern; None for the bucket)."""

    action: str
    resource: str  # the resource as JSON
    bucket: str | None = None
    pattern: str | None = None
    prefixes: tuple[str, ...] = ()  # s3:prefix conditions of a ListBucket grant
    sid: str = ""


def _s3_resource(resource: Any) -> tuple[str | None, str | None]:
    """``(bucket, key pattern)`` of an S3 resource of the rendered template; the pattern is None for the bucket."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical, attribute = resource["Fn::GetAtt"]
        return (logical, None) if logical in BUCKETS and attribute == "Arn" else (None, None)
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        if isinstance(text, list):  # SAM policy templates: ["arn:...:s3:::${bucketName}/*", {"bucketName": Ref}]
            template, names = text
            for name, value in names.items():
                if isinstance(value, dict) and value.get("Ref") in BUCKETS:
                    found = re.fullmatch(r"arn:\$\{AWS::Partition\}:s3:::\$\{" + name + r"\}(/(.*))?", template)
                    if found:
                        return value["Ref"], found.group(2)
            return None, None
        found = re.fullmatch(r"\$\{(\w+)\.Arn\}(/(.*))?", text)
        if found and found.group(1) in BUCKETS:
            return found.group(1), found.group(3)
    return None, None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(role: dict[str, Any]) -> list[Grant]:
    """Every (action, resource) an IAM role's inline policies allow."""
    found = []
    for policy in role["Properties"].get("Policies", []):
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            if statement["Effect"] != "Allow":
                continue
            prefixes = tuple(_as_list(statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])))
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    bucket, pattern = _s3_resource(resource)
                    found.append(
                        Grant(
                            action=action,
                            resource=json.dumps(resource, sort_keys=True),
                            bucket=bucket,
                            pattern=pattern,
                            prefixes=prefixes,
                            sid=statement.get("Sid", ""),
                        )
                    )
    return found


def covers(grant: Grant, need: Need) -> bool:
    """Whether a grant allows what the code needs (the action, on the right resource)."""
    if not fnmatchcase(need.action, grant.action):
        return False
    if not need.action.startswith("s3:"):
        return need.resource is None or need.resource in grant.resource
    if grant.bucket is None:
        return False
    if need.bucket is not None and grant.bucket != need.bucket:
        return False
    if need.action == "s3:ListBucket":
        if grant.pattern is not None:
            return False
        if need.prefix is None or not grant.prefixes:
            return True
        return any(fnmatchcase(need.prefix + "x", prefix) for prefix in grant.prefixes)
    if grant.pattern is None:
        return False
    return need.prefix is None or fnmatchcase(need.prefix + "x", grant.pattern)


def used(grant: Grant, wanted: set[Need]) -> bool:
    """Whether some need of the code is what a grant is for (the same action on that resource)."""
    return any(covers(grant, need) for need in wanted)


def missing(wanted: set[Need], granted: list[Grant]) -> set[Need]:
    return {need for need in wanted if not any(covers(grant, need) for grant in granted)}


def unused(function: str, wanted: set[Need], granted: list[Grant]) -> set[tuple[str, str]]:
    return {
        (grant.action, grant.resource)
        for grant in granted
        if not used(grant, wanted) and (function, grant.action) not in JUSTIFIED_GRANTS
    }


# ---------------------------------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return render_template(load_template(ROOT / "template.yaml"), "artifacts", {})


def functions_of() -> dict[str, str]:
    """``{resource: folder}`` of every function of the template."""
    return {
        name: Path(resource["Properties"]["CodeUri"]).name
        for name, resource in load_template(ROOT / "template.yaml")["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


FUNCTIONS = functions_of()


def role_of(rendered: dict[str, Any], function: str) -> dict[str, Any]:
    role = rendered["Resources"][function]["Properties"]["Role"]
    logical: str = role["Fn::GetAtt"][0]
    resource: dict[str, Any] = rendered["Resources"][logical]
    return resource


def _code_grants(rendered: dict[str, Any], function: str) -> list[Grant]:
    """The grants of the function's own ``Policies`` (SAM names them ``<role>Policy<n>``), without what SAM adds
    for the function's configuration (its dead-letter queue)."""
    role = role_of(rendered, function)
    name = rendered["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [p for p in role["Properties"].get("Policies", []) if re.fullmatch(rf"{name}Policy\d+", p["PolicyName"])]
    return grants({"Properties": {"Policies": policies}})


def _describe(items: set[Any]) -> str:
    return "\n  ".join(sorted(map(str, items)))


# ---------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------


def test_every_function_of_the_template_has_a_handler_to_read() -> None:
    assert FUNCTIONS, "no functions in template.yaml"
    for resource, folder in FUNCTIONS.items():
        assert (FUNCTIONS_DIR / folder / "app.py").is_file(), resource
        assert "lambda_handler" in modules()[f"functions.{folder}"].functions, resource


def test_every_boto3_call_in_the_package_is_in_the_table() -> None:
    """A boto3 operation of a client the package makes that ``CALLS`` does not know would escape the comparison."""
    services = set()
    for module in modules().values():
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"client", "resource"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                services.add(str(node.args[0].value))
    assert {"s3", "dynamodb", "sns", "bedrock", "bedrock-runtime"} <= services
    session = botocore.session.get_session()
    operations = {
        xform_name(name) for service in services for name in session.get_service_model(service).operation_names
    }
    used_names = {
        node.attr for module in modules().values() for node in ast.walk(module.tree) if isinstance(node, ast.Attribute)
    }
    paginated = {
        operation
        for module in modules().values()
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Call) and (operation := _operation_of(node)) is not None
    }
    unknown = ((used_names | paginated) & operations) - set(CALLS)
    assert not unknown, f"boto3 operations the IAM table does not know: {sorted(unknown)}"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_policy_grants_every_call_the_code_can_make(rendered: dict[str, Any], function: str) -> None:
    wanted = needs(function, reach(FUNCTIONS[function]))
    gaps = missing(wanted, _code_grants(rendered, function))
    assert not gaps, f"{function} can make calls its policy does not allow:\n  {_describe(gaps)}"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_policy_grants_nothing_the_code_does_not_use(rendered: dict[str, Any], function: str) -> None:
    wanted = needs(function, reach(FUNCTIONS[function]))
    extra = unused(function, wanted, _code_grants(rendered, function))
    assert not extra, f"{function}'s policy allows what no code path of it uses:\n  {_describe(extra)}"


def test_justified_grants_and_known_over_reach_are_still_current(rendered: dict[str, Any]) -> None:
    for function, action in JUSTIFIED_GRANTS:
        granted = _code_grants(rendered, function)
        assert any(grant.action == action for grant in granted), f"stale JUSTIFIED_GRANTS entry {function} {action}"
        wanted = needs(function, reach(FUNCTIONS[function]))
        assert not any(need.action == action for need in wanted), f"{function} uses {action}: drop the entry"
    for function, action, bucket, prefix in NOT_REACHED:
        tags = reach(FUNCTIONS[function]).tags
        actions = {
            a
            for tag in tags
            if (tag.bucket, tag.prefix) == (bucket, prefix)
            for op in tag.operations
            for a in _actions_of(op)
        }
        assert action in actions, f"stale NOT_REACHED entry {function} {action} {bucket} {prefix}"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_s3_call_is_tied_to_a_bucket_and_a_prefix(function: str) -> None:
    """An S3 call whose bucket or key the analysis cannot tell would only be checked against "some S3 grant": name
    the bucket at the call site (``settings.internal_bucket``, ...) or teach ``bucket_of``/``PREFIX_MARKERS``."""
    vague = {need for need in needs(function, reach(FUNCTIONS[function])) if need.action.startswith("s3:")}
    vague = {need for need in vague if need.bucket is None or need.prefix is None}
    assert not vague, f"{function}: S3 calls with no bucket or key prefix the analysis can tell:\n  {_describe(vague)}"


def test_what_the_analysis_finds_for_convert_input() -> None:
    """A spot check of the analysis itself, on the function of the issue that started it."""
    wanted = needs("ConvertInputFunction", reach("convert_input"))
    assert Need("s3:GetObject", "InternalBucket", "runs/") in wanted  # records.jsonl read back when ids repeat
    assert Need("s3:GetObjectVersion", "CustomerBucket", "input_data/") in wanted
    assert Need("s3:GetObject", "CustomerBucket", "config/tasks/") in wanted
    assert Need("s3:GetObject", "CustomerBucket", "config/controls/") in wanted  # the task's control file
    assert Need("s3:AbortMultipartUpload", "InternalBucket", "runs/") in wanted
    assert {need.action for need in wanted if not need.action.startswith("s3:")} == {"dynamodb:UpdateItem"}


def test_a_missing_grant_fails(rendered: dict[str, Any]) -> None:
    """Deleting one grant the code needs is caught (here: ConvertInput reading runs/ of the internal bucket)."""
    granted = _code_grants(rendered, "ConvertInputFunction")
    wanted = needs("ConvertInputFunction", reach("convert_input"))
    assert not missing(wanted, granted)
    without = [g for g in granted if not (g.action == "s3:GetObject" and g.bucket == "InternalBucket")]
    assert Need("s3:GetObject", "InternalBucket", "runs/") in missing(wanted, without)
    put = [g for g in _code_grants(rendered, "SubmitJobFunction") if g.action != "dynamodb:PutItem"]
    put_item = Need("dynamodb:PutItem", resource='"RunsTable"')
    assert put_item in missing(needs("SubmitJobFunction", reach("submit_job")), put)


def test_an_unused_grant_fails(rendered: dict[str, Any]) -> None:
    """A grant no code path uses is caught: a delete in the internal bucket's runs/ for ShardRecords."""
    granted = _code_grants(rendered, "ShardRecordsFunction")
    wanted = needs("ShardRecordsFunction", reach("shard_records"))
    assert not unused("ShardRecordsFunction", wanted, granted)
    extra = Grant(
        action="s3:DeleteObject",
        resource=json.dumps({"Fn::Sub": "${InternalBucket.Arn}/runs/*"}),
        bucket="InternalBucket",
        pattern="runs/*",
    )
    assert unused("ShardRecordsFunction", wanted, [*granted, extra]) == {(extra.action, extra.resource)}
