"""aistudios_local.model_tracking: moto lists the instances a backend holds, and no others."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import boto3
import pytest
from moto.dynamodb.models.dynamo_type import Item
from moto.s3.models import FakeKey

from aistudios_local.model_tracking import WeakInstances, WeakTracking
from tests.unit._fixtures import fake_aws

UPDATES = 200


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with fake_aws(monkeypatch):
        boto3.client("dynamodb").create_table(
            TableName="slots",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield "slots"


def _update_many(table: str) -> None:
    """Write one item's holders map ``UPDATES`` times, as the render limiter does."""
    client = boto3.client("dynamodb")
    for i in range(UPDATES):
        client.update_item(
            TableName=table,
            Key={"pk": {"S": "renders"}},
            UpdateExpression="SET holders.#h = :lease",
            ExpressionAttributeNames={"#h": f"export-{i % 10}"},
            ExpressionAttributeValues={":lease": {"N": str(i)}},
        ) if i else client.put_item(
            TableName=table, Item={"pk": {"S": "renders"}, "holders": {"M": {}}}
        )


def _live_items() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Item)


def test_moto_alone_keeps_every_version_of_an_updated_item(table: str) -> None:
    """The cause: without the swap, every superseded version stays alive."""
    before = _live_items()
    _update_many(table)
    assert _live_items() - before >= UPDATES


def test_superseded_versions_are_released_and_the_stored_item_stays_listed(table: str) -> None:
    tracking = WeakTracking()
    tracking.install()
    try:
        assert isinstance(Item.instances_tracked, WeakInstances)  # type: ignore[attr-defined]
        before = _live_items()
        _update_many(table)
        assert _live_items() - before <= 5
        tracked: WeakInstances = Item.instances_tracked  # type: ignore[attr-defined]
        assert tracked.slots <= 2 * len(tracked) + 2
        item = boto3.client("dynamodb").get_item(TableName="slots", Key={"pk": {"S": "renders"}})
        assert len(item["Item"]["holders"]["M"]) == 10
        stored = [i for i in tracked if i.hash_key.value == "renders"]
        assert stored, "the item the table holds is still listed"
    finally:
        tracking.uninstall()
    assert isinstance(Item.instances_tracked, list)  # type: ignore[attr-defined]
    assert not tracking.installed


def test_an_object_that_s3_holds_stays_listed_for_its_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_aws(monkeypatch):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="tracking-test")
        tracking = WeakTracking()
        tracking.install()
        try:
            s3.put_object(Bucket="tracking-test", Key="k", Body=b"v1")
            s3.put_object(Bucket="tracking-test", Key="k", Body=b"v2")  # unversioned: replaces v1
            gc.collect()
            keys = [k for k in FakeKey.instances_tracked if k.name == "k"]  # type: ignore[attr-defined]
            assert [k.value for k in keys] == [b"v2"]
        finally:
            tracking.uninstall()
        assert s3.get_object(Bucket="tracking-test", Key="k")["Body"].read() == b"v2"


def test_an_instance_without_weak_references_is_held() -> None:
    tracked = WeakInstances()
    tracked.append(1)  # ints cannot be weakly referenced
    assert list(tracked) == [1]
