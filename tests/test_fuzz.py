"""Property-based fuzz of the API from its OpenAPI document (schemathesis), against a live
server: every generated request must get a non-5xx answer that conforms to the document."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e_support import Stack, multipart
from tests.helpers import png_bytes, zip_bytes

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_path(ROOT / "service" / "openapi.yaml")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = 80
MINIMUM_REQUESTS = 1000
sent: list[int] = []

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory):
    # The fuzz is about HTTP handling: an in-memory broker stands in for RabbitMQ.
    stack = Stack(tmp_path_factory.mktemp("fuzz") / "data", "stub://",
                  SWEEPLAB_MAX_GRID_POINTS="50")
    stack.start_api()
    _, model = stack.request("POST", "/api/v1/models", {"name": "seed"})
    archive = zip_bytes({f"{label}/{n}.png": png_bytes(label * 10 + n)
                         for label in (1, 2) for n in range(2)})
    body, headers = multipart({"images": ("seed.zip", archive)})
    stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body, headers=headers)
    stack.request("POST", f"/api/v1/models/{model['id']}/experiments", {"start": False})
    yield stack
    stack.stop()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_non_5xx_answers(case, live_api):
    response = case.call(base_url=live_api.base, timeout=30)
    sent.append(response.status_code)
    case.validate_response(response, checks=CHECKS)


def test_the_fuzz_sent_enough_requests():
    print(f"\nfuzz: {len(sent)} requests, statuses {sorted(set(sent))}")
    assert len(sent) >= MINIMUM_REQUESTS, f"only {len(sent)} generated requests"
    assert not [status for status in sent if status >= 500]
