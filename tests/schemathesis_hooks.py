"""Imported by test_schema_fuzz, which runs schemathesis in-process (`schemathesis run` would load
it through SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): its positive-data check,
allowing only the documented 422s that no JSON Schema can state (schemas.CONTEXT_CODES: a
prompt's length in tokens, a position past a run's end, one of two parameters...). Any other
rejection of a request the schema accepts is still a failure."""

from __future__ import annotations

import json

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.schemas import CONTEXT_CODES


@schemathesis.check
def positive_data_accepted_or_context(ctx, response, case):
    if response.status_code == 422 and case.meta is not None and case.meta.generation.mode.is_positive:
        try:
            code = json.loads(response.content).get("code")
        except ValueError:
            code = None
        if code in CONTEXT_CODES:
            return True
    return positive_data_acceptance(ctx, response, case)
