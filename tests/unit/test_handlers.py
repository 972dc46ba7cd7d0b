"""The thin handlers with their sample events: AWS on moto, AI Studios the local simulator.

The simulator serves the API and the download host over HTTP on 127.0.0.1; the handlers find it
as in a deployment, through ``AISTUDIOS_API_URL`` and ``TRUSTED_DOWNLOAD_ORIGIN``. What AI
Studios saw is the simulator's own record of the calls it answered.
"""

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
import urllib3

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
from aistudios_local.simulator import AiStudiosSimulator, Call, Scenario, video_bytes
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

TOKEN = "tok-LIVE-5ecret"
"""The token the sample ``refresh_token`` event names as refused (AI Studios never issued it)."""
APP_ID = "app-1d-5ecret"
USER_KEY = "user-key-5ecret"
BUCKET = "aistudios-export-output"
VIDEO_SIZE = 1024 * 1024
VIDEO = video_bytes(PROJECT_ID, "1080", VIDEO_SIZE)
"""The video the simulator serves for the sample export (1 MiB, one part)."""
PROGRESS = PROGRESS_PATH.format(project_id=PROJECT_ID)
SLOTS_TABLE = "stack-RenderSlots"
TIMEOUT = 5.0


@dataclass
class Stack:
    """The handlers' world: moto's Secrets Manager and S3, and AI Studios on loopback.

    ``token`` is the one the token secret holds, issued by the simulator; ``arranged`` counts
    the calls a test made itself to set AI Studios up (see :func:`start_render`).
    """

    secrets: SecretsManagerClient
    s3: S3Client
    sim: AiStudiosSimulator
    token: str
    token_secret: str
    credentials_secret: str
    arranged: int = 0

    def calls(self) -> list[Call]:
        """The calls AI Studios answered for the handlers (not those of the test's set-up)."""
        return self.sim.calls[self.arranged :]

    def secrets_known(self) -> list[str]:
        """Every secret of this stack: the credentials, the tokens and the URL signatures."""
        return [TOKEN, APP_ID, USER_KEY, *self.sim.secrets_issued()]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Stack]:
    with (
        fake_aws(monkeypatch),
        AiStudiosSimulator(app_id=APP_ID, user_key=USER_KEY, video_size=VIDEO_SIZE) as sim,
    ):
        token = sim.issue_token()
        secrets = boto3.client("secretsmanager")
        credentials = secrets.create_secret(
            Name="stack/CredentialsSecret",
            SecretString=json.dumps({"appId": APP_ID, "userKey": USER_KEY}),
        )["ARN"]
        token_secret = secrets.create_secret(
            Name="stack/TokenSecret", SecretString=token_record(token, 0)
        )["ARN"]
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for name, value in {
            "POWERTOOLS_SERVICE_NAME": "aistudios-export",
            "AISTUDIOS_API_URL": sim.base_url,
            "TOKEN_SECRET_ID": token_secret,
            "CREDENTIALS_SECRET_ID": credentials,
            "OUTPUT_BUCKET": BUCKET,
            "OUTPUT_PREFIX": "exports/",
            # Download URLs name the host the client used: the API's origin.
            "TRUSTED_DOWNLOAD_ORIGIN": sim.base_url,
            "DOWNLOAD_PART_SIZE_MIB": "5",
            "RENDER_SLOTS_TABLE": SLOTS_TABLE,
        }.items():
            monkeypatch.setenv(name, value)
        create_render_slots_table(SLOTS_TABLE)
        built = Stack(secrets, s3, sim, token, token_secret, credentials)
        yield built
        known = built.secrets_known()
    # Every record, with the extra fields Powertools would print (caplog sees them via propagation).
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = repr(record.__dict__)
        for secret in known:
            assert secret not in text, f"a secret reached the log line {record.getMessage()!r}"


def run(function_dir: str, event: dict[str, Any]) -> Any:
    result = load_handler(function_dir)(event, LambdaContextStub(function_name=function_dir))
    json.dumps(result)  # Lambda must be able to return it
    return result


def no_secret_in(stack: Stack, value: Any) -> None:
    text = json.dumps(value)
    for secret in stack.secrets_known():
        assert secret not in text


def seen(calls: list[Call]) -> list[tuple[str, str, int, bool]]:
    """Each call's method, path, answered status and whether it carried a valid token."""
    return [(c.method, c.path, c.status, c.authorized) for c in calls]


def start_render(stack: Stack, scenario: Scenario) -> None:
    """AI Studios has accepted the sample's export, which renders as ``scenario`` says.

    The export is submitted here with the stack's token, as SubmitExport did earlier; the
    handlers' calls are those after it (:meth:`Stack.calls`).
    """
    stack.sim.set_scenario(PROJECT_ID, scenario)
    with urllib3.PoolManager() as http:
        answer = http.request(
            "POST",
            stack.sim.base_url + EXPORT_PATH,
            json={"projectId": PROJECT_ID, "resolution": "1080"},
            headers={"Authorization": stack.token},
            timeout=TIMEOUT,
            retries=False,
        )
    assert answer.status == 200, answer.data
    stack.arranged = len(stack.sim.calls)


def serve_finished_video(stack: Stack) -> None:
    """The sample's export is done: its first progress answer has a download URL."""
    start_render(stack, Scenario(progress_steps=(100.0,)))


def refuse_stored_token(stack: Stack) -> None:
    """The token secret holds the token the sample ``refresh_token`` event names as refused."""
    stack.secrets.put_secret_value(SecretId=stack.token_secret, SecretString=token_record(TOKEN, 0))


# --- SubmitExport --------------------------------------------------------------------------


def test_submit_export(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
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
    # With the stored token, the only one AI Studios issued.
    assert seen(stack.calls()) == [("POST", EXPORT_PATH, 200, True)]
    assert stack.calls()[0].body == {"projectId": PROJECT_ID, "resolution": "1080"}
    no_secret_in(stack, job)
    assert "export submitted" in caplog.messages


def test_submit_export_invalid_request_calls_nothing(stack: Stack) -> None:
    event = load_event("submit_export")
    event["request"]["resolution"] = "8k"
    with pytest.raises(InvalidRequest, match="resolution"):
        run("submit_export", event)
    assert stack.calls() == []


def test_submit_export_without_a_free_slot_queues_and_calls_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_RENDERS_IN_FLIGHT", "1")
    other = load_event("submit_export") | {"executionName": "another-export"}
    assert run("submit_export", other)["outcome"] == "waiting"
    job = run("submit_export", load_event("submit_export"))
    assert (job["outcome"], job["state"], job["progress"]) == ("queued", "queued", 0)
    assert job["waitSeconds"] >= 1 and job["queue"]["attempts"] == 1
    # The other export's submit only.
    assert seen(stack.calls()) == [("POST", EXPORT_PATH, 200, True)]


# --- CheckProgress -------------------------------------------------------------------------


def test_check_progress_done(stack: Stack) -> None:
    serve_finished_video(stack)
    event = load_event("check_progress")
    job = run("check_progress", event)
    assert job["outcome"] == "done"
    assert job["slotExpires"] == 0  # the render slot is free before the copy
    assert job["polls"] == event["job"]["polls"] + 1
    assert seen(stack.calls()) == [("GET", PROGRESS, 200, True)]
    no_secret_in(stack, job)


def test_check_progress_failed(stack: Stack) -> None:
    start_render(stack, Scenario(progress_steps=(40.0,), fail_at_poll=1))
    job = run("check_progress", load_event("check_progress"))
    assert (job["outcome"], job["error"]) == ("failed", "ExportFailed")


def test_check_progress_without_a_job(stack: Stack) -> None:
    with pytest.raises(InvalidRequest):
        run("check_progress", {})
    assert stack.calls() == []


# --- FinalizeExport ------------------------------------------------------------------------


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
    assert video["sha256"] == stack.sim.expected_sha256(PROJECT_ID)
    stored = stack.s3.get_object(Bucket=BUCKET, Key=key, VersionId=video["versionId"])
    assert stored["Body"].read() == VIDEO
    tags = stack.s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=video["versionId"])
    assert tags["TagSet"] == [{"Key": "sha256", "Value": video["sha256"]}]
    assert stack.sim.download_count(PROJECT_ID) == 1
    no_secret_in(stack, video)


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


def last_issued_token(stack: Stack) -> str:
    """The token AI Studios minted last (these tests have no download URL signed after it)."""
    return stack.sim.secrets_issued()[-1]


def test_refresh_token_from_the_state_machine(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_stored_token(stack)
    event = load_event("refresh_token")
    # The sample's cause names this stack's token as refused, as a CheckProgress 401 would.
    assert Unauthorized.refused_fingerprint(event["refusedCause"]) == token_fingerprint(TOKEN)
    result = run("refresh_token", event)
    assert result == {"refreshes": 1, "resume": "CheckProgress", "minted": True}
    # AI Studios minted for the stack's credentials (it accepts no others).
    assert seen(stack.calls()) == [("POST", TOKEN_PATH, 200, False)]
    assert stack.sim.tokens_minted == 1
    assert current_token(stack) == last_issued_token(stack)
    assert "minted and stored a new token" in caplog.messages


def test_refresh_token_as_the_rotation_function(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # testSecret asks AI Studios whether it accepts the pending token (an unknown project is
    # an answer: the token was accepted).
    probe = PROGRESS_PATH.format(project_id=PROBE_PROJECT_ID)
    # The stored token is refused from now on: an authorized probe carried the new one.
    stack.sim.revoke_tokens()
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
    rotated = current_token(stack)
    assert rotated == last_issued_token(stack) != stack.token
    stages = stack.secrets.describe_secret(SecretId=stack.token_secret)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[version]
    assert seen(stack.calls()) == [("POST", TOKEN_PATH, 200, False), ("GET", probe, 404, True)]
    assert stack.sim.tokens_minted == 1


def test_a_warm_refresh_function_reuses_its_secrets_manager_client(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_stored_token(stack)
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
    assert stack.calls() == []  # the state machine's path would have minted
