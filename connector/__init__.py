"""CloudTrail → Security Hub / OpenSearch findings connector."""

__version__ = "0.1.0"
