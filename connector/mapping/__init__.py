"""Mapping files → compiled mappings → neutral findings."""

from connector.mapping.engine import build_finding, finding_id
from connector.mapping.loader import EventMapping, load_mapping_file, load_mappings

__all__ = ["EventMapping", "build_finding", "finding_id", "load_mapping_file", "load_mappings"]
