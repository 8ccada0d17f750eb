"""Workflow conversion: the converter (per-type global streams -> workflow stream) and the workflow-stream consumer."""

from __future__ import annotations

from ._consumer import WorkflowConsumer, WorkflowConsumerSettings, WorkflowInvocation, WorkflowTrigger, dlq_fields
from ._converter import CONVERT_SCRIPT, ConverterSettings, WorkflowConverter
from ._correlation import DEFAULT_CORRELATION_FIELDS, CorrelationRules

__all__ = [
    "CONVERT_SCRIPT",
    "DEFAULT_CORRELATION_FIELDS",
    "ConverterSettings",
    "CorrelationRules",
    "WorkflowConsumer",
    "WorkflowConsumerSettings",
    "WorkflowConverter",
    "WorkflowInvocation",
    "WorkflowTrigger",
    "dlq_fields",
]
