"""The SAM template against the contract in docs/workflow.md and the state machine definition.

The template is rendered to CloudFormation offline with aws-sam-translator (what ``sam deploy`` does server-side),
so the assertions look at the resources CloudFormation would really create.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from batch_classifier_local.template import load_template, render_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
WORKFLOW_DOC = ROOT / "docs" / "workflow.md"
STATE_MACHINE = "BatchClassifierStateMachine"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# Resources other than roles that carry one PolicyDocument (IAM or resource policies).
POLICY_RESOURCES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
}


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture
def rendered(sam_template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The template as CloudFormation after the SAM transform (local code paths swapped for S3 locations)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return render_template(
        sam_template,
        "artifacts",
        {"EnableQuickSight": "true", "QuickSightPrincipalArn": "arn:aws:quicksight:::user/x"},
    )


def _resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == resource_type}


def _function_rows() -> list[tuple[str, str, str]]:
    """``(folder, resource, state cell)`` of each function row in the Names table of docs/workflow.md."""
    rows = re.findall(
        r"^\|\s*`(\w+)`\s*\|\s*`(\w+Function)`\s*\|([^|\n]*)\|", WORKFLOW_DOC.read_text(encoding="utf-8"), re.M
    )
    assert rows, "no function rows found in the Names table of docs/workflow.md"
    return [(folder, resource, state.strip()) for folder, resource, state in rows]


def _documented_functions() -> dict[str, str]:
    """``{resource: folder}`` of every function in the Names table of docs/workflow.md."""
    return {resource: folder for folder, resource, _ in _function_rows()}


def _workflow_functions() -> set[str]:
    """The functions that are states of the workflow (their state cell names one; "—" marks one that is not)."""
    return {resource for _, resource, state in _function_rows() if not state.startswith("—")}


def _documented_environment() -> set[str]:
    """Names in backticks in the 'Environment variables' paragraph of docs/workflow.md."""
    text = WORKFLOW_DOC.read_text(encoding="utf-8")
    paragraph = re.search(r"^Environment variables.*?(?:\n\n|\Z)", text, re.M | re.S)
    assert paragraph, "no 'Environment variables' paragraph in docs/workflow.md"
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", paragraph.group(0)))
    assert names, "no variable names in the 'Environment variables' paragraph"
    return names


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _policy_documents(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM or resource policy document of the rendered template, with where it comes from."""
    documents = []
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            documents += [(f"{name}/{p['PolicyName']}", p["PolicyDocument"]) for p in properties.get("Policies", [])]
        elif resource["Type"] in POLICY_RESOURCES:
            documents.append((name, properties["PolicyDocument"]))
    return documents


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------------------------------------------------
# The state machine's substitutions against the ASL file and the contract
# ----------------------------------------------------------------------------------------------------------------


def test_definition_substitutions_match_the_contract(rendered: dict[str, Any]) -> None:
    substitutions = rendered["Resources"][STATE_MACHINE]["Properties"]["DefinitionSubstitutions"]
    expected = {f"{resource}Arn" for resource in _workflow_functions()} | {
        "InternalBucketName",
        "RunsTableName",
        "RunEventsTopicArn",
    }
    assert set(substitutions) == expected


def test_every_asl_placeholder_is_substituted_and_every_substitution_used(
    sam_template: dict[str, Any], rendered: dict[str, Any]
) -> None:
    definition_uri = sam_template["Resources"][STATE_MACHINE]["Properties"]["DefinitionUri"]
    asl_path = ROOT / definition_uri
    if not asl_path.is_file():
        pytest.skip(f"{definition_uri} does not exist yet (written alongside the template)")
    used = set(PLACEHOLDER.findall(asl_path.read_text(encoding="utf-8")))
    defined = set(rendered["Resources"][STATE_MACHINE]["Properties"]["DefinitionSubstitutions"])
    assert used - defined == set(), f"placeholders in {definition_uri} with no DefinitionSubstitutions entry"
    assert defined - used == set(), f"DefinitionSubstitutions never used in {definition_uri}"


def _all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition, the states of Map item processors included."""
    found = {}
    for name, state in states.items():
        found[name] = state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(_all_states(processor["States"]))
    return found


def _paths_in(value: Any) -> set[str]:
    """The JSONPaths of the execution's data (not ``$$.`` context paths) in ``.$`` fields of a parameter tree."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.endswith(".$") and isinstance(inner, str):
                paths.update(p for p in re.findall(r"(?<![$\w])\$(?!\$)(?:\.[\w]+)*", inner))
            else:
                paths.update(_paths_in(inner))
    elif isinstance(value, list):
        for inner in value:
            paths.update(_paths_in(inner))
    return paths


def _reads_and_writes(state: dict[str, Any]) -> tuple[set[str], str]:
    reads = _paths_in(state.get("Parameters", {})) | _paths_in(state.get("ItemSelector", {}))
    reads |= _paths_in(state.get("ItemReader", {}).get("Parameters", {}))
    reads |= {state[k] for k in ("SecondsPath", "MaxConcurrencyPath", "InputPath") if k in state}
    reads |= {choice["Variable"] for choice in state.get("Choices", [])}
    if state["Type"] in {"Choice", "Wait"}:
        return reads, ""
    written = state.get("ResultPath", "$")
    return reads, "(discarded)" if written is None else written


def _documented_reads_and_writes() -> dict[str, tuple[set[str], str]]:
    """``{state: (reads, writes)}`` from the 'What each state reads and writes' table of docs/workflow.md."""
    text = WORKFLOW_DOC.read_text(encoding="utf-8")
    section = text.split("### What each state reads and writes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|([^|]*)\|", section, re.M)
    assert rows, "no rows in the 'What each state reads and writes' table of docs/workflow.md"
    return {name: (set(re.findall(r"`([^`]+)`", reads)), writes.strip().strip("`")) for name, reads, writes in rows}


def test_docs_say_what_every_state_reads_and_writes() -> None:
    definition = json.loads((ROOT / "statemachine" / "batch_classifier.asl.json").read_text(encoding="utf-8"))
    states = {
        name: _reads_and_writes(state)
        for name, state in _all_states(definition["States"]).items()
        if state["Type"] not in {"Succeed", "Fail"}
    }
    assert states == _documented_reads_and_writes()


def test_every_state_machine_file_is_deployed(sam_template: dict[str, Any]) -> None:
    deployed = {
        resource["Properties"]["DefinitionUri"]
        for resource in _resources_of_type(sam_template, "AWS::Serverless::StateMachine").values()
    }
    assert deployed == {"statemachine/batch_classifier.asl.json"}
    on_disk = {path.relative_to(ROOT).as_posix() for path in (ROOT / "statemachine").glob("*.asl.json")}
    assert on_disk <= deployed, "an ASL file in statemachine/ that no state machine deploys"


def test_state_machine_is_standard_traced_and_logged(rendered: dict[str, Any]) -> None:
    properties = rendered["Resources"][STATE_MACHINE]["Properties"]
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert properties["LoggingConfiguration"]["Level"] in {"ALL", "ERROR"}


# ----------------------------------------------------------------------------------------------------------------
# Functions
# ----------------------------------------------------------------------------------------------------------------


def test_every_documented_function_is_declared_with_its_folder_and_handler(sam_template: dict[str, Any]) -> None:
    functions = _resources_of_type(sam_template, "AWS::Serverless::Function")
    documented = _documented_functions()
    assert set(functions) == set(documented)
    for resource, folder in documented.items():
        properties = functions[resource]["Properties"]
        assert properties["CodeUri"] == f"functions/{folder}/", resource
        assert properties["Handler"] == "app.lambda_handler", resource


def test_functions_render_with_the_shared_settings(rendered: dict[str, Any]) -> None:
    functions = _resources_of_type(rendered, "AWS::Lambda::Function")
    assert set(functions) == set(_documented_functions())
    environment = _documented_environment()
    for name, resource in functions.items():
        properties = resource["Properties"]
        assert properties["Runtime"] == "python3.13", name
        assert properties["Handler"] == "app.lambda_handler", name
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        # SAM renames a layer version's logical id with a content hash (CommonLayer<hash>).
        (layer,) = properties["Layers"]
        assert "CommonLayer" in json.dumps(layer), name
        assert set(properties["Environment"]["Variables"]) == environment, name


def test_the_layer_is_built_for_python_3_13(sam_template: dict[str, Any]) -> None:
    layer = sam_template["Resources"]["CommonLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    architectures = sam_template["Globals"]["Function"]["Architectures"]
    assert layer["Metadata"].get("BuildArchitecture", "x86_64") == architectures[0]


# ----------------------------------------------------------------------------------------------------------------
# The trigger
# ----------------------------------------------------------------------------------------------------------------


def _rules_targeting(rendered: dict[str, Any], target: dict[str, Any]) -> list[dict[str, Any]]:
    rules = _resources_of_type(rendered, "AWS::Events::Rule").values()
    return [rule["Properties"] for rule in rules if any(t["Arn"] == target for t in rule["Properties"]["Targets"])]


def _upload_rule(rendered: dict[str, Any]) -> dict[str, Any]:
    rules = _rules_targeting(rendered, {"Ref": STATE_MACHINE})
    assert len(rules) == 1, f"expected one EventBridge rule starting the workflow, found {len(rules)}"
    return rules[0]


def test_every_rule_starts_the_workflow_or_records_a_failure(rendered: dict[str, Any]) -> None:
    rules = _resources_of_type(rendered, "AWS::Events::Rule")
    targets = [target["Arn"] for rule in rules.values() for target in rule["Properties"]["Targets"]]
    assert sorted(targets, key=json.dumps) == sorted(
        [{"Ref": STATE_MACHINE}, {"Fn::GetAtt": ["RecordFailureFunction", "Arn"]}], key=json.dumps
    )


def test_stopped_executions_of_the_workflow_reach_record_failure(rendered: dict[str, Any]) -> None:
    (rule,) = _rules_targeting(rendered, {"Fn::GetAtt": ["RecordFailureFunction", "Arn"]})
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    # A state machine's Ref is its ARN: only this stack's executions are recorded.
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": STATE_MACHINE}]
    permissions = [
        p["Properties"]
        for p in _resources_of_type(rendered, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "RecordFailureFunction"}
    ]
    assert [p["Principal"] for p in permissions] == ["events.amazonaws.com"]
    # Every function without a state is invoked by a rule, not by the workflow.
    assert set(_documented_functions()) - _workflow_functions() == {"RecordFailureFunction"}


def test_record_failure_may_only_fail_runs_stop_their_jobs_and_announce_them(rendered: dict[str, Any]) -> None:
    documents = [d for where, d in _policy_documents(rendered) if where.startswith("RecordFailureFunctionRole/")]
    granted = {
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for document in documents
        for statement in _statements(document)
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
    }
    table = json.dumps({"Fn::GetAtt": ["RunsTable", "Arn"]}, sort_keys=True)
    topic = json.dumps({"Ref": "RunEventsTopic"}, sort_keys=True)
    jobs = json.dumps(
        {"Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:model-invocation-job/*"},
        sort_keys=True,
    )
    queue = json.dumps({"Fn::GetAtt": ["FailureEventsDeadLetterQueue", "Arn"]}, sort_keys=True)
    assert granted == {
        ("dynamodb:GetItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:Query", table),
        ("bedrock:StopModelInvocationJob", jobs),
        ("sns:Publish", topic),
        ("sqs:SendMessage", queue),  # SAM's grant for the function's dead-letter queue
    }


def test_failure_events_that_cannot_be_recorded_land_in_a_dead_letter_queue(rendered: dict[str, Any]) -> None:
    """RecordFailure runs asynchronously (EventBridge): an event it cannot be given, or that still fails after
    Lambda's retries, is kept in an encrypted queue instead of vanishing."""
    queue = {"Fn::GetAtt": ["FailureEventsDeadLetterQueue", "Arn"]}
    function = rendered["Resources"]["RecordFailureFunction"]["Properties"]
    assert function["DeadLetterConfig"] == {"TargetArn": queue}
    (rule,) = _rules_targeting(rendered, {"Fn::GetAtt": ["RecordFailureFunction", "Arn"]})
    (target,) = rule["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": queue}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert rendered["Resources"]["FailureEventsDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True


def test_dead_letter_queues_accept_only_their_own_rule(rendered: dict[str, Any]) -> None:
    rules = {name: props["Properties"] for name, props in _resources_of_type(rendered, "AWS::Events::Rule").items()}
    expected = {
        "UploadEventsDeadLetterQueue": "UploadEventsRule",
        "FailureEventsDeadLetterQueue": "RecordFailureFunctionExecutionStopped",
    }
    for queue, rule in expected.items():
        targets = rules[rule]["Targets"]
        assert [t["DeadLetterConfig"] for t in targets] == [{"Arn": {"Fn::GetAtt": [queue, "Arn"]}}], rule
        (policy,) = [
            p["Properties"]
            for p in _resources_of_type(rendered, "AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": queue}]
        ]
        (statement,) = _statements(policy["PolicyDocument"])
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}, queue
        assert statement["Action"] == "sqs:SendMessage", queue
        assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}, queue
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}, queue


def test_uploads_under_input_data_of_the_customer_bucket_start_the_workflow(rendered: dict[str, Any]) -> None:
    rule = _upload_rule(rendered)
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "CustomerBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "input_data/"}]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": STATE_MACHINE}
    customer_bucket = rendered["Resources"]["CustomerBucket"]["Properties"]
    assert customer_bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_the_input_transformer_builds_the_execution_input(rendered: dict[str, Any]) -> None:
    transformer = _upload_rule(rendered)["Targets"][0]["InputTransformer"]
    paths = transformer["InputPathsMap"]
    assert set(paths.values()) == {
        "$.detail.bucket.name",
        "$.detail.object.key",
        "$.detail.object.size",
        "$.detail.object.etag",
        "$.detail.object.version-id",
        "$.time",
        "$.id",
    }
    # Fill the placeholders the way EventBridge does (strings inside quotes, the size as a bare number).
    sample = {
        "$.detail.bucket.name": "customer-bucket",
        "$.detail.object.key": "input_data/travel/calls.xlsx",
        "$.detail.object.size": "1234",
        "$.detail.object.etag": "abc123",
        "$.detail.object.version-id": "v1",
        "$.time": "2025-01-01T00:00:00Z",
        "$.id": "event-1",
    }
    text = transformer["InputTemplate"]
    for name, path in paths.items():
        text = text.replace(f"<{name}>", sample[path])
    assert json.loads(text) == {
        "bucket": "customer-bucket",
        "key": "input_data/travel/calls.xlsx",
        "size": 1234,
        "etag": "abc123",
        "version_id": "v1",
        "event_time": "2025-01-01T00:00:00Z",
        "event_id": "event-1",
    }


# ----------------------------------------------------------------------------------------------------------------
# Least privilege
# ----------------------------------------------------------------------------------------------------------------


def test_every_role_a_service_assumes_has_confused_deputy_conditions(rendered: dict[str, Any]) -> None:
    """Bedrock, Step Functions and EventBridge assume roles on a resource's behalf: each trust names the account and
    the resource (Lambda execution roles are assumed by the function itself, which has no source to name)."""
    expected = {
        "BedrockBatchRole": "bedrock.amazonaws.com",
        "StateMachineRole": "states.amazonaws.com",
        "UploadEventsRuleRole": "events.amazonaws.com",
    }
    roles = _resources_of_type(rendered, "AWS::IAM::Role")
    services = {
        name: statement["Principal"]["Service"]
        for name, role in roles.items()
        for statement in _statements(role["Properties"]["AssumeRolePolicyDocument"])
    }
    assert {name: service for name, service in services.items() if "lambda" not in json.dumps(service)} == expected
    for name in expected:
        (statement,) = _statements(roles[name]["Properties"]["AssumeRolePolicyDocument"])
        condition = statement["Condition"]
        assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}, name
        (source,) = [v for k, v in condition.items() if k in {"ArnLike", "ArnEquals"}]
        assert set(source) == {"aws:SourceArn"}, name
    state_machine = roles["StateMachineRole"]["Properties"]["AssumeRolePolicyDocument"]
    sources = json.dumps(_statements(state_machine)[0]["Condition"]["ArnLike"])
    assert ":stateMachine:${AWS::StackName}-workflow" in sources
    rule = rendered["Resources"]["UploadEventsRule"]["Properties"]
    upload_role = roles["UploadEventsRuleRole"]["Properties"]["AssumeRolePolicyDocument"]
    (trusted,) = _statements(upload_role)[0]["Condition"]["ArnEquals"].values()
    assert trusted["Fn::Sub"].endswith(":rule/" + rule["Name"]["Fn::Sub"])
    assert rendered["Resources"][STATE_MACHINE]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["StateMachineRole", "Arn"]}
    assert rule["Targets"][0]["RoleArn"] == {"Fn::GetAtt": ["UploadEventsRuleRole", "Arn"]}


def test_bedrock_batch_role_trusts_only_this_accounts_batch_jobs(rendered: dict[str, Any]) -> None:
    role = rendered["Resources"]["BedrockBatchRole"]["Properties"]
    (statement,) = _statements(role["AssumeRolePolicyDocument"])
    assert statement["Principal"] == {"Service": "bedrock.amazonaws.com"}
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    source_arn = json.dumps(condition["ArnLike"]["aws:SourceArn"])
    assert ":bedrock:" in source_arn
    assert ":model-invocation-job/*" in source_arn


def test_no_policy_allows_every_action(rendered: dict[str, Any]) -> None:
    documents = _policy_documents(rendered)
    assert documents, "no policy documents found in the rendered template"
    for where, document in documents:
        for statement in _statements(document):
            assert "NotAction" not in statement, where
            if statement["Effect"] != "Allow":
                # A Deny of s3:* (the TLS-only bucket policies) narrows access; only grants must be specific.
                continue
            for action in _as_list(statement["Action"]):
                assert action != "*", where
                assert not action.endswith(":*"), f"{where} allows {action}"


def test_pass_role_is_limited_to_the_batch_role_and_bedrock(rendered: dict[str, Any]) -> None:
    pass_role = [
        (where, statement)
        for where, document in _policy_documents(rendered)
        for statement in _statements(document)
        if "iam:PassRole" in _as_list(statement.get("Action", []))
    ]
    assert {where.split("/")[0] for where, _ in pass_role} == {"SubmitJobFunctionRole", "CheckJobFunctionRole"}
    for where, statement in pass_role:
        assert statement["Resource"] == {"Fn::GetAtt": ["BedrockBatchRole", "Arn"]}, where
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}, where


def test_buckets_are_private_encrypted_and_tls_only(rendered: dict[str, Any]) -> None:
    policies = _resources_of_type(rendered, "AWS::S3::BucketPolicy")
    for bucket in ("CustomerBucket", "InternalBucket", "AccessLogsBucket"):
        properties = rendered["Resources"][bucket]["Properties"]
        assert all(properties["PublicAccessBlockConfiguration"].values()), bucket
        assert len(properties["PublicAccessBlockConfiguration"]) == 4, bucket
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"], bucket
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, bucket
        (policy,) = [p for p in policies.values() if p["Properties"]["Bucket"] == {"Ref": bucket}]
        denies = [
            s
            for s in _statements(policy["Properties"]["PolicyDocument"])
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies, f"{bucket} accepts requests without TLS"


def test_bucket_access_is_logged_to_the_access_log_bucket(rendered: dict[str, Any]) -> None:
    prefixes = {}
    for bucket in ("CustomerBucket", "InternalBucket"):
        logging = rendered["Resources"][bucket]["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}, bucket
        prefixes[bucket] = logging["LogFilePrefix"]
    assert len(set(prefixes.values())) == 2, "each bucket logs under its own prefix"
    logs = rendered["Resources"]["AccessLogsBucket"]
    assert logs["DeletionPolicy"] == "Retain"
    assert "LoggingConfiguration" not in logs["Properties"], "the log bucket must not log into itself"
    (rule,) = logs["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"]
    (policy,) = [
        p["Properties"]["PolicyDocument"]
        for p in _resources_of_type(rendered, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "AccessLogsBucket"}
    ]
    (delivery,) = [s for s in _statements(policy) if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"] == [
        {"Fn::Sub": "${AccessLogsBucket.Arn}/" + prefix + "*"} for prefix in prefixes.values()
    ]
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert delivery["Condition"]["ArnLike"]["aws:SourceArn"] == [{"Fn::GetAtt": [bucket, "Arn"]} for bucket in prefixes]


def test_every_checkov_skip_says_why(sam_template: dict[str, Any]) -> None:
    """checkov (``checkov -f template.yaml --framework cloudformation``) reads skips from each resource's Metadata;
    each one names its check and gives the reason, so a reader can judge it."""
    skips = [
        (name, skip)
        for name, resource in sam_template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
        assert len(skip.get("comment", "")) > 40, f"{name} skips {skip['id']} without a reason"
    functions = _resources_of_type(sam_template, "AWS::Serverless::Function")
    dead_letter = {n for n, skip in skips if skip["id"] == "CKV_AWS_116"}
    # Only the functions the workflow invokes synchronously may go without a dead-letter queue.
    assert dead_letter == set(functions) - {"RecordFailureFunction"}


# ----------------------------------------------------------------------------------------------------------------
# Status table and analytics
# ----------------------------------------------------------------------------------------------------------------


def test_runs_table_matches_the_status_table_design(rendered: dict[str, Any]) -> None:
    table = rendered["Resources"]["RunsTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "RunsByStatus"
    assert index["KeySchema"] == [
        {"AttributeName": "run_status", "KeyType": "HASH"},
        {"AttributeName": "started_at", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_results_table_projects_daily_partitions(rendered: dict[str, Any]) -> None:
    table = rendered["Resources"]["AnalyticsResultsTable"]["Properties"]["TableInput"]
    assert table["Name"] == "results"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.dt.format"] == "yyyy-MM-dd"
    # ${!dt} is Fn::Sub's escape for a literal ${dt}, which Athena fills in per partition.
    location = parameters["storage.location.template"]["Fn::Sub"].replace("${!", "${")
    assert location == "s3://${InternalBucket}/analytics/results/dt=${dt}/"
    columns = {column["Name"]: column["Type"] for column in table["StorageDescriptor"]["Columns"]}
    assert columns["correct"] == "boolean"
    assert {"run_id", "task", "class", "status", "label", "processed_at"} <= set(columns)


def test_quicksight_resources_exist_only_behind_the_condition(sam_template: dict[str, Any]) -> None:
    quicksight = {
        name: res for name, res in sam_template["Resources"].items() if res["Type"].startswith("AWS::QuickSight::")
    }
    assert set(quicksight) == {"QuickSightDataSource", "QuickSightDataSet", "QuickSightDashboard"}
    assert {res.get("Condition") for res in quicksight.values()} == {"CreateQuickSight"}


def test_layer_requirements_match_the_package_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    layer = [
        line.strip()
        for line in (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # boto3 and botocore too: the Lambda runtime's own may predate the APIs the functions call.
    assert sorted(layer) == sorted(declared)
    assert {"boto3", "botocore"} <= {d.split("==")[0] for d in layer}


def test_the_log_level_never_filters_out_metrics(sam_template: dict[str, Any]) -> None:
    """Lambda's application log filter drops lines without a level above INFO: the Powertools metric lines (EMF has
    no level) and uncaught errors would go with them."""
    assert sam_template["Parameters"]["LogLevel"]["AllowedValues"] == ["DEBUG", "INFO"]
