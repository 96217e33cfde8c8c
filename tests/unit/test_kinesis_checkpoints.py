"""The Kinesis source's checkpoint and acknowledgement logic, against an in-memory stream.

``MemoryStream`` implements the part of the Kinesis API contract the source uses (ListShards,
GetShardIterator with every iterator type, GetRecords with NextShardIterator and
MillisBehindLatest, a closed shard's null iterator) and ``MemoryCheckpoints`` the checkpoint
store's (load; a save that only moves forward). The moto tests exercise the real services.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.model import SourceMessage
from connector.sources.kinesis.checkpoints import Checkpoint
from connector.sources.kinesis.source import KinesisSource


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class MemoryStream:
    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {}
        self.seq = itertools.count(1000)
        self.iterator_requests: list[dict[str, Any]] = []
        self.expire_next = False
        self.throttle_next = 0

    def add_shard(self, shard_id: str, *, parents: tuple[str, ...] = ()) -> None:
        self.shards[shard_id] = {"records": [], "parents": parents, "closed": False}

    def put(self, shard_id: str, *datas: bytes) -> list[str]:
        out = []
        for data in datas:
            sequence = str(next(self.seq))
            self.shards[shard_id]["records"].append((sequence, data, datetime.now().astimezone()))
            out.append(sequence)
        return out

    def close(self, shard_id: str) -> None:
        self.shards[shard_id]["closed"] = True

    # -- the API the source calls ----------------------------------------------------------
    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        shards = []
        for shard_id, shard in self.shards.items():
            entry: dict[str, Any] = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": "0"}}
            for key, parent in zip(("ParentShardId", "AdjacentParentShardId"), shard["parents"]):
                entry[key] = parent
            if shard["closed"] and shard["records"]:
                entry["SequenceNumberRange"]["EndingSequenceNumber"] = shard["records"][-1][0]
            shards.append(entry)
        return {"Shards": shards}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        shard_id, kind = kwargs["ShardId"], kwargs["ShardIteratorType"]
        records = self.shards[shard_id]["records"]
        if kind == "TRIM_HORIZON":
            index = 0
        elif kind == "LATEST":
            index = len(records)
        elif kind == "AT_TIMESTAMP":
            index = next((i for i, r in enumerate(records) if r[2] >= kwargs["Timestamp"]), len(records))
        elif kind == "AFTER_SEQUENCE_NUMBER":
            index = next(i for i, r in enumerate(records) if r[0] == kwargs["StartingSequenceNumber"]) + 1
        else:
            raise AssertionError(kind)
        return {"ShardIterator": f"{shard_id}|{index}"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if self.throttle_next:
            self.throttle_next -= 1
            raise client_error("ProvisionedThroughputExceededException")
        if self.expire_next:
            self.expire_next = False
            raise client_error("ExpiredIteratorException")
        shard_id, index_text = ShardIterator.split("|")
        index = int(index_text)
        shard = self.shards[shard_id]
        chunk = shard["records"][index:index + Limit]
        end = index + len(chunk)
        at_end = end >= len(shard["records"])
        return {
            "Records": [{"SequenceNumber": s, "Data": d} for s, d, _ in chunk],
            "NextShardIterator": None if shard["closed"] and at_end else f"{shard_id}|{end}",
            "MillisBehindLatest": 0 if at_end else 5000,
        }

    def describe_stream_summary(self, **kwargs: Any) -> dict[str, Any]:
        return {}


class MemoryCheckpoints:
    def __init__(self, initial: dict[str, Checkpoint] | None = None) -> None:
        self.saved: dict[str, Checkpoint] = dict(initial or {})
        self.writes: list[tuple[str, str | None, bool]] = []

    def load(self) -> dict[str, Checkpoint]:
        return dict(self.saved)

    def save(self, shard_id: str, sequence_number: str | None, *, finished: bool = False) -> bool:
        current = self.saved.get(shard_id)
        if current is not None and (current.finished or (
                not finished and current.sequence_number and int(current.sequence_number) >= int(sequence_number or 0))):
            return False
        self.writes.append((shard_id, sequence_number, finished))
        self.saved[shard_id] = Checkpoint(shard_id, sequence_number, finished)
        return True


def make_source(stream: MemoryStream, checkpoints: MemoryCheckpoints | None = None, **kwargs: Any) -> KinesisSource:
    return KinesisSource("s", checkpoints or MemoryCheckpoints(), client=stream,  # type: ignore[arg-type]
                         idle_sleep_seconds=0.0, **kwargs)


def receive_some(source: KinesisSource, tries: int = 20) -> list[SourceMessage]:
    for _ in range(tries):
        batch = source.receive()
        if batch:
            return batch
    return []


def bodies(batch: list[SourceMessage]) -> list[bytes]:
    return [m.body for m in batch]


@pytest.fixture()
def stream() -> MemoryStream:
    s = MemoryStream()
    s.add_shard("shard-0")
    return s


def test_the_checkpoint_moves_only_over_the_acknowledged_prefix(stream: MemoryStream) -> None:
    seqs = stream.put("shard-0", b"a", b"b", b"c", b"d")
    checkpoints = MemoryCheckpoints()
    source = make_source(stream, checkpoints)
    batch = receive_some(source)
    assert bodies(batch) == [b"a", b"b", b"c", b"d"]
    source.ack([batch[1], batch[2]])
    assert "shard-0" not in checkpoints.saved, "a gap before the acknowledged records holds the checkpoint"
    source.ack([batch[0]])
    assert checkpoints.saved["shard-0"].sequence_number == seqs[2]
    source.ack([batch[3]])
    assert checkpoints.saved["shard-0"].sequence_number == seqs[3]


def test_a_release_before_any_checkpoint_rereads_the_backlog_from_the_start(stream: MemoryStream) -> None:
    stream.put("shard-0", *(f"r{i}".encode() for i in range(40)))
    source = make_source(stream)
    first = receive_some(source)
    assert len(first) == 40
    source.release(first)
    again = receive_some(source)
    assert bodies(again) == bodies(first), "the backlog is read again, not skipped"
    assert [r["ShardIteratorType"] for r in stream.iterator_requests] == ["TRIM_HORIZON", "TRIM_HORIZON"]


def test_latest_is_pinned_to_the_time_of_the_first_read(stream: MemoryStream) -> None:
    stream.put("shard-0", b"old")
    source = make_source(stream, start_position="LATEST")
    assert receive_some(source, tries=2) == []  # LATEST: nothing yet
    stream.put("shard-0", b"new1", b"new2")
    batch = receive_some(source)
    assert bodies(batch) == [b"new1", b"new2"]
    source.release(batch)
    again = receive_some(source)
    assert bodies(again) == [b"new1", b"new2"], "the re-read starts where LATEST was, not at 'now'"
    assert stream.iterator_requests[1]["ShardIteratorType"] == "AT_TIMESTAMP"


def test_a_release_after_a_checkpoint_resumes_after_it(stream: MemoryStream) -> None:
    seqs = stream.put("shard-0", b"a", b"b", b"c")
    source = make_source(stream)
    batch = receive_some(source)
    source.ack([batch[0]])
    source.release(batch[1:])
    again = receive_some(source)
    assert bodies(again) == [b"b", b"c"]
    assert stream.iterator_requests[-1] == {"StreamName": "s", "ShardId": "shard-0",
                                            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                                            "StartingSequenceNumber": seqs[0]}


def test_a_restart_resumes_after_the_stored_checkpoint(stream: MemoryStream) -> None:
    seqs = stream.put("shard-0", b"a", b"b", b"c")
    checkpoints = MemoryCheckpoints({"shard-0": Checkpoint("shard-0", seqs[1], False)})
    assert bodies(receive_some(make_source(stream, checkpoints))) == [b"c"]


def test_an_expired_iterator_resumes_from_the_checkpoint(stream: MemoryStream) -> None:
    stream.put("shard-0", b"a", b"b")
    source = make_source(stream)
    batch = receive_some(source)
    source.ack(batch)
    stream.put("shard-0", b"c")
    stream.expire_next = True
    assert source.receive() == []
    assert bodies(receive_some(source)) == [b"c"]
    assert stream.iterator_requests[-1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"


def test_throttling_is_retried_within_the_call(stream: MemoryStream) -> None:
    stream.put("shard-0", b"a")
    stream.throttle_next = 2
    source = make_source(stream)
    assert bodies(receive_some(source, tries=3)) == [b"a"]


def test_a_child_shard_waits_for_its_parent_and_is_read_from_its_start(stream: MemoryStream) -> None:
    stream.put("shard-0", b"p1", b"p2")
    stream.close("shard-0")
    stream.add_shard("shard-1", parents=("shard-0",))
    stream.put("shard-1", b"c1")
    checkpoints = MemoryCheckpoints()
    source = make_source(stream, checkpoints)
    parent = receive_some(source)
    assert bodies(parent) == [b"p1", b"p2"]
    assert receive_some(source, tries=5) == [], "the child is not read while the parent's records are in flight"
    source.ack(parent)
    assert checkpoints.saved["shard-0"].finished
    child = receive_some(source)
    assert bodies(child) == [b"c1"]
    child_request = next(r for r in stream.iterator_requests if r["ShardId"] == "shard-1")
    assert child_request["ShardIteratorType"] == "TRIM_HORIZON"


def test_drained_once_every_shard_is_at_its_tip_with_nothing_in_flight(stream: MemoryStream) -> None:
    stream.put("shard-0", b"a")
    source = make_source(stream)
    batch = receive_some(source)
    assert not source.drained
    source.ack(batch)
    source.receive()  # an empty page at the tip
    assert source.drained


def test_at_timestamp_without_a_time_is_a_configuration_error(stream: MemoryStream) -> None:
    from connector.errors import SourceError

    with pytest.raises(SourceError, match="start_timestamp"):
        make_source(stream, start_position="AT_TIMESTAMP")
    source = make_source(stream, start_position="AT_TIMESTAMP",
                         start_timestamp=(datetime.now().astimezone() - timedelta(hours=1)).isoformat())
    stream.put("shard-0", b"a")
    assert bodies(receive_some(source)) == [b"a"]
