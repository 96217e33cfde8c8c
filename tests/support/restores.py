"""Restore events (the records that undo a deletion) built from a deletion record of the case book."""

from __future__ import annotations

import copy
import uuid
from typing import Any


def restore_record(deletion: dict[str, Any], event_name: str, request: dict[str, Any], *,
                   response: dict[str, Any] | None = None, event_time: str = "2026-11-20T11:00:00Z",
                   arn: str = "arn:aws:iam::123456789012:user/restorer") -> dict[str, Any]:
    record = copy.deepcopy(deletion)
    record.update({
        "eventName": event_name, "requestParameters": request, "responseElements": response,
        "eventTime": event_time, "eventID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"restore/{event_name}/{request}/{event_time}")),
    })
    record["userIdentity"] = {**record.get("userIdentity", {}), "arn": arn}
    return record
