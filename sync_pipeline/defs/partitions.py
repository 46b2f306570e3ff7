"""Tenants as dynamic partitions: one partition per registered tenant slug."""

import dagster as dg

TENANT_PARTITIONS = "tenant"

tenant_partitions = dg.DynamicPartitionsDefinition(name=TENANT_PARTITIONS)
