"""Enrichment of a deleted resource: lookups declared in the mapping files, blast radius, restore plan."""
