"""Correlation across findings: a burst of network deletions becomes one "network teardown" finding.

``store`` (window state shared by replicas: DynamoDB, or memory), ``teardown`` (windows, members,
the neutral finding), ``render`` (ASFF/OCSF of it), ``correlator`` (the stage the pipeline calls).
"""

from connector.correlate.correlator import Correlator
from connector.correlate.store import DynamoWindowStore, MemoryWindowStore, WindowStore

__all__ = ["Correlator", "DynamoWindowStore", "MemoryWindowStore", "WindowStore"]
