"""The thin handlers with their sample events: AWS on moto, AI Studios on ``responses``."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import pytest
import responses

from aistudios_export.client import (
    EXPORT_PATH,
    PROBE_PROJECT_ID,
    PROGRESS_PATH,
    TOKEN_PATH,
    token_fingerprint,
)
from aistudios_export.errors import (
    ConfigurationError,
    InvalidRequest,
    ManifestInvalid,
    Unauthorized,
)
from aistudios_export.observability import URLLIB3_LOGGERS, strip_query_strings
from aistudios_export.tokens import token_record
from tests.events import load_event
from tests.unit._fixtures import (
    PROJECT_ID,
    ROTATION_LAMBDA_ARN,
    T0,
    LambdaContextStub,
    create_render_slots_table,
    fake_aws,
    install_rotation_lambda,
    load_handler,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient

API = "https://api.aistudios.test"
DOWNLOAD_ORIGIN = "http://127.0.0.1:8999"
SIGNED_URL = f"{DOWNLOAD_ORIGIN}/exports/v.mp4?X-Amz-Signature=sig-5ecret"
TOKEN = "tok-LIVE-5ecret"
APP_ID = "app-1d-5ecret"
USER_KEY = "user-key-5ecret"
SECRETS = (TOKEN, APP_ID, USER_KEY, "sig-5ecret", "MINTED-5ecret", "ROTATED-5ecret")
BUCKET = "aistudios-export-output"
VIDEO = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class Stack:
    secrets: SecretsManagerClient
    s3: S3Client
    api: responses.RequestsMock
    token_secret: str
    credentials_secret: str


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Stack]:
    with fake_aws(monkeypatch), responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        secrets = boto3.client("secretsmanager")
        credentials = secrets.create_secret(
            Name="stack/CredentialsSecret",
            SecretString=json.dumps({"appId": APP_ID, "userKey": USER_KEY}),
        )["ARN"]
        token = secrets.create_secret(
            Name="stack/TokenSecret", SecretString=token_record(TOKEN, 0)
        )["ARN"]
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for name, value in {
            "POWERTOOLS_SERVICE_NAME": "aistudios-export",
            "AISTUDIOS_API_URL": API,
            "TOKEN_SECRET_ID": token,
            "CREDENTIALS_SECRET_ID": credentials,
            "OUTPUT_BUCKET": BUCKET,
            "OUTPUT_PREFIX": "exports/",
            "TRUSTED_DOWNLOAD_ORIGIN": DOWNLOAD_ORIGIN,
            "DOWNLOAD_PART_SIZE_MIB": "5",
            "RENDER_SLOTS_TABLE": SLOTS_TABLE,
        }.items():
            monkeypatch.setenv(name, value)
        create_render_slots_table(SLOTS_TABLE)
        yield Stack(secrets, s3, api, token, credentials)
    # Every record, with the extra fields Powertools would print (caplog sees them via propagation).
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = repr(record.__dict__)
        for secret in SECRETS:
            assert secret not in text, f"a secret reached the log line {record.getMessage()!r}"


def run(function_dir: str, event: dict[str, Any]) -> Any:
    result = load_handler(function_dir)(event, LambdaContextStub(function_name=function_dir))
    json.dumps(result)  # Lambda must be able to return it
    return result


def no_secret_in(value: Any) -> None:
    text = json.dumps(value)
    for secret in SECRETS:
        assert secret not in text


def progress(**data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


PROGRESS_URL = API + PROGRESS_PATH.format(project_id=PROJECT_ID)
SLOTS_TABLE = "stack-RenderSlots"


# --- SubmitExport --------------------------------------------------------------------------


def test_submit_export(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    stack.api.post(API + EXPORT_PATH, json={"success": True, "data": {"projectId": PROJECT_ID}})
    job = run("submit_export", load_event("submit_export"))
    assert (job["projectId"], job["resolution"], job["outputPrefix"]) == (
        PROJECT_ID,
        "1080",
        "team-a/",
    )
    assert (job["pollSeconds"], job["stallSeconds"], job["outcome"]) == (15, 600, "waiting")
    assert job["deadline"] - job["submittedAt"] == 1800
    # The render slot was taken first: the job carries its lease.
    assert job["slotExpires"] > job["submittedAt"]
    (call,) = stack.api.calls
    assert call.request.headers["Authorization"] == TOKEN
    assert json.loads(call.request.body or b"") == {"projectId": PROJECT_ID, "resolution": "1080"}
    no_secret_in(job)
    assert "export submitted" in caplog.messages


def test_submit_export_invalid_request_calls_nothing(stack: Stack) -> None:
    event = load_event("submit_export")
    event["request"]["resolution"] = "8k"
    with pytest.raises(InvalidRequest, match="resolution"):
        run("submit_export", event)
    assert len(stack.api.calls) == 0


def test_submit_export_without_a_free_slot_queues_and_calls_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_RENDERS_IN_FLIGHT", "1")
    other = load_event("submit_export") | {"executionName": "another-export"}
    stack.api.post(API + EXPORT_PATH, json={"success": True, "data": {"projectId": PROJECT_ID}})
    assert run("submit_export", other)["outcome"] == "waiting"
    job = run("submit_export", load_event("submit_export"))
    assert (job["outcome"], job["state"], job["progress"]) == ("queued", "queued", 0)
    assert job["waitSeconds"] >= 1 and job["queue"]["attempts"] == 1
    assert len(stack.api.calls) == 1  # the other export's submit only


# --- CheckProgress -------------------------------------------------------------------------


def test_check_progress_done(stack: Stack) -> None:
    stack.api.get(
        PROGRESS_URL, json=progress(state="completed", progress=100, downloadUrl=SIGNED_URL)
    )
    event = load_event("check_progress")
    job = run("check_progress", event)
    assert job["outcome"] == "done"
    assert job["slotExpires"] == 0  # the render slot is free before the copy
    assert job["polls"] == event["job"]["polls"] + 1
    assert stack.api.calls[0].request.headers["Authorization"] == TOKEN
    no_secret_in(job)


def test_check_progress_failed(stack: Stack) -> None:
    stack.api.get(PROGRESS_URL, json=progress(state="failed", progress=40))
    job = run("check_progress", load_event("check_progress"))
    assert (job["outcome"], job["error"]) == ("failed", "ExportFailed")


def test_check_progress_without_a_job(stack: Stack) -> None:
    with pytest.raises(InvalidRequest):
        run("check_progress", {})
    assert len(stack.api.calls) == 0


# --- FinalizeExport ------------------------------------------------------------------------


def serve_finished_video(stack: Stack) -> None:
    stack.api.get(
        PROGRESS_URL, json=progress(state="completed", progress=100, downloadUrl=SIGNED_URL)
    )
    stack.api.get(
        SIGNED_URL,
        body=VIDEO,
        headers={"Content-Length": str(len(VIDEO))},
        content_type="video/mp4",
    )


def test_finalize_export_stores_the_verified_video(stack: Stack) -> None:
    serve_finished_video(stack)
    result = run("finalize_export", load_event("finalize_export"))
    assert (result["projectId"], result["resolution"]) == (PROJECT_ID, "1080")
    video = result["video"]
    key = f"exports/team-a/{PROJECT_ID}/1080/20260101T000000Z.mp4"
    assert T0 == 1_767_225_600.0  # the sample event's submittedAt
    assert {k: video[k] for k in ("bucket", "key", "size", "sha256", "contentType", "s3Uri")} == {
        "bucket": BUCKET,
        "key": key,
        "size": len(VIDEO),
        "sha256": hashlib.sha256(VIDEO).hexdigest(),
        "contentType": "video/mp4",
        "s3Uri": f"s3://{BUCKET}/{key}",
    }
    stored = stack.s3.get_object(Bucket=BUCKET, Key=key, VersionId=video["versionId"])
    assert stored["Body"].read() == VIDEO
    tags = stack.s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=video["versionId"])
    assert tags["TagSet"] == [{"Key": "sha256", "Value": video["sha256"]}]
    no_secret_in(video)


def test_finalize_export_answers_the_machine_s_earlier_definition_with_the_video(
    stack: Stack,
) -> None:
    # Executions started before the output became FinalizeExport's run on after a deployment
    # (and in a redrive): their ResultPath is $.video.
    serve_finished_video(stack)
    event = load_event("finalize_export")
    del event["result"]
    video = run("finalize_export", event)
    assert video["key"] == f"exports/team-a/{PROJECT_ID}/1080/20260101T000000Z.mp4"
    assert "projectId" not in video


def test_finalize_export_keeps_signed_url_queries_out_of_urllib3_logs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    loggers = [logging.getLogger(name) for name in URLLIB3_LOGGERS]
    for logger in loggers:  # as in a new container: nothing installed yet
        monkeypatch.setattr(logger, "filters", [])
    serve_finished_video(stack)

    run("finalize_export", load_event("finalize_export"))

    assert all(logger.filters == [strip_query_strings] for logger in loggers)


# --- PrepareManifest and SummarizeBatch ----------------------------------------------------


def stored_json(stack: Stack, key: str) -> Any:
    return json.loads(stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_prepare_manifest(stack: Stack) -> None:
    event = load_event("prepare_manifest")
    data = f"projectId,resolution\n{PROJECT_ID},720\nbad,720\n".encode()
    stack.s3.put_object(Bucket=BUCKET, Key=event["request"]["key"], Body=data)
    plan = run("prepare_manifest", event)
    assert plan["counts"] == {"rows": 2, "accepted": 1, "rejected": 1, "duplicates": 0}
    assert stored_json(stack, plan["itemsKey"])[0]["input"]["pollSeconds"] == 15


def test_prepare_manifest_raises_manifest_invalid(stack: Stack) -> None:
    event = load_event("prepare_manifest")
    stack.s3.put_object(Bucket=BUCKET, Key=event["request"]["key"], Body=b"")
    with pytest.raises(ManifestInvalid, match="is empty"):
        run("prepare_manifest", event)


def test_summarize_batch(stack: Stack) -> None:
    event = load_event("summarize_batch")
    request = {"projectId": PROJECT_ID, "resolution": "1080"}
    rows = [{"name": f"{PROJECT_ID}-1080-{'0' * 20}", "input": request}]
    stack.s3.put_object(Bucket=BUCKET, Key=event["batch"]["itemsKey"], Body=json.dumps(rows))
    stack.s3.put_object(Bucket=BUCKET, Key=event["batch"]["rejectedKey"], Body=b"[]")
    # The Map's results: it never started the row's export.
    manifest_key = event["mapRun"]["ResultWriterDetails"]["Key"]
    pending_key = manifest_key.replace("manifest.json", "PENDING_0.json")
    pending = [{"Input": json.dumps(rows[0]), "Status": "PENDING"}]
    stack.s3.put_object(Bucket=BUCKET, Key=pending_key, Body=json.dumps(pending))
    files = {"FAILED": [], "SUCCEEDED": [], "PENDING": [{"Key": pending_key, "Size": 1}]}
    manifest = {"DestinationBucket": BUCKET, "ResultFiles": files}
    stack.s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(manifest))
    summary = run("summarize_batch", event)
    # The export never ran: the row is reported, the batch fails.
    assert summary["status"] == "FAILED" and summary["error"] == "ExportsFailed"
    report = stored_json(stack, event["batch"]["reportKey"])
    assert report["rows"][0]["status"] == "NOT_STARTED"


# --- RefreshToken --------------------------------------------------------------------------


def current_token(stack: Stack) -> str:
    value = json.loads(stack.secrets.get_secret_value(SecretId=stack.token_secret)["SecretString"])
    token: str = value["token"]
    return token


def test_refresh_token_from_the_state_machine(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.api.post(API + TOKEN_PATH, json={"success": True, "data": {"token": "tok-MINTED-5ecret"}})
    event = load_event("refresh_token")
    # The sample's cause names this stack's token as refused, as a CheckProgress 401 would.
    assert Unauthorized.refused_fingerprint(event["refusedCause"]) == token_fingerprint(TOKEN)
    result = run("refresh_token", event)
    assert result == {"refreshes": 1, "resume": "CheckProgress", "minted": True}
    assert json.loads(stack.api.calls[0].request.body or b"") == {
        "appId": APP_ID,
        "userKey": USER_KEY,
    }
    assert current_token(stack) == "tok-MINTED-5ecret"
    assert "minted and stored a new token" in caplog.messages


def test_refresh_token_as_the_rotation_function(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.api.post(
        API + TOKEN_PATH, json={"success": True, "data": {"token": "tok-ROTATED-5ecret"}}
    )
    # testSecret asks AI Studios whether it accepts the pending token (an unknown project is
    # an answer: the token was accepted).
    probe = API + PROGRESS_PATH.format(project_id=PROBE_PROJECT_ID)
    stack.api.get(probe, status=404, json={"success": False, "error": {"code": "NOT_FOUND"}})
    handler = load_handler("refresh_token")
    results: list[Any] = []

    def rotation_function(event: dict[str, Any]) -> Any:
        results.append(handler(event, LambdaContextStub()))
        return results[-1]

    events = install_rotation_lambda(monkeypatch, rotation_function)
    version = stack.secrets.rotate_secret(
        SecretId=stack.token_secret, RotationLambdaARN=ROTATION_LAMBDA_ARN
    )["VersionId"]
    assert [e["Step"] for e in events] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]
    assert results == [{}, {}, {}, {}]
    assert current_token(stack) == "tok-ROTATED-5ecret"
    stages = stack.secrets.describe_secret(SecretId=stack.token_secret)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[version]
    assert [c.request.url for c in stack.api.calls] == [API + TOKEN_PATH, probe]
    assert stack.api.calls[1].request.headers["Authorization"] == "tok-ROTATED-5ecret"


def test_a_warm_refresh_function_reuses_its_secrets_manager_client(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.api.post(API + TOKEN_PATH, json={"success": True, "data": {"token": "tok-MINTED-5ecret"}})
    created: list[str] = []
    create = botocore.session.Session.create_client

    def counting(self: botocore.session.Session, service_name: str, *args: Any, **kw: Any) -> Any:
        created.append(service_name)
        return create(self, service_name, *args, **kw)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    handler = load_handler("refresh_token")
    # The second call names the token the first one replaced: nothing to mint again.
    minted = [handler(load_event("refresh_token"), LambdaContextStub())["minted"] for _ in "12"]
    assert minted == [True, False]
    rotation = load_event("refresh_token_rotation") | {"SecretId": stack.token_secret}
    with pytest.raises(ConfigurationError, match="is not being rotated"):
        handler(rotation, LambdaContextStub())
    assert created == ["secretsmanager"]


def test_rotation_event_is_routed_to_rotation(stack: Stack) -> None:
    event = load_event("refresh_token_rotation") | {"SecretId": stack.token_secret}
    with pytest.raises(ConfigurationError, match="is not being rotated"):
        run("refresh_token", event)
    assert len(stack.api.calls) == 0  # the state machine's path would have minted
