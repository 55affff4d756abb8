"""Property-based fuzz of the API from its OpenAPI document as served (schemathesis), against a
live server. Valid requests must get a non-5xx answer that conforms to the document; invalid
ones (wrong types, missing and extra fields, values past the limits, malformed ids, other
methods and content types) a documented 4xx with the JSON error body, never a 5xx."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.mutations import OperatorKind
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.generation.meta import CONTENT_TYPE_PROBES
from schemathesis.specs.openapi.checks import unsupported_method

from service.web.api.health import openapi_document
from service.web.openapi_doc import served_document
from tests.conftest import make_settings
from tests.e2e_support import Stack, multipart
from tests.helpers import png_bytes, zip_bytes

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection, unsupported_method]
# What an invalid request may get: never a 5xx (schemathesis' default list allows them).
REJECTIONS = ["400", "404", "405", "409", "413", "415", "422"]
POSITIVE_EXAMPLES = 50
NEGATIVE_EXAMPLES = 100
MINIMUM_POSITIVE = 600
MINIMUM_NEGATIVE = 1000
FUZZ_ENV = {"SWEEPLAB_MAX_GRID_POINTS": "50"}
SERVED = served_document(openapi_document(), make_settings(Path("/nonexistent"), **FUZZ_ENV))
sent: Counter[tuple[str, str, int]] = Counter()

pytestmark = pytest.mark.e2e


class LiveApi:
    """The API as a real process, with a model, an experiment and its runs to aim at."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.base = stack.base
        _, model = stack.request("POST", "/api/v1/models", {"name": "seed"})
        archive = zip_bytes({f"{label}/{n}.png": png_bytes(label * 10 + n)
                             for label in (1, 2) for n in range(2)})
        body, headers = multipart({"images": ("seed.zip", archive)})
        stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body,
                      headers=headers)
        _, experiment = stack.request("POST", f"/api/v1/models/{model['id']}/experiments",
                                      {"start": False})
        self.seeds = {"models": model["id"], "experiments": experiment["id"],
                      "runs": experiment["runs"][0]["id"]}
        self.spares = 0

    def spare_model(self) -> int:
        """A model of its own for a DELETE to take, so the seed stays."""
        self.spares += 1
        _, model = self.stack.request("POST", "/api/v1/models", {"name": f"spare {self.spares}"})
        return model["id"]

    def url(self, path: str) -> str:
        """A documented path with the id of a resource that exists (and a well-formed hash)."""
        path = path.replace("{sha}", "0" * 64).replace("{version}", "0" * 64)
        return path.replace("{id}", str(self.seeds[path.split("/")[3]])) if "{id}" in path else path

    def aim(self, case: schemathesis.Case) -> None:
        """Point the case at a resource that exists, unless its invalid part is the id: what
        the server then judges is the rest of the request, not a 404 for a made-up id."""
        if not case.path_parameters or negated(case, ParameterLocation.PATH) and not negated(
                case, ParameterLocation.BODY):
            return
        kind = case.path.split("/")[3]  # /api/v1/<kind>/{id}...
        case.path_parameters["id"] = (self.spare_model() if case.method == "DELETE"
                                      else self.seeds[kind])


def negated(case: schemathesis.Case, location: ParameterLocation) -> bool:
    component = case.meta.components.get(location) if case.meta else None
    return component is not None and component.mode.is_negative


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory):
    # The fuzz is about HTTP handling: an in-memory broker stands in for RabbitMQ.
    stack = Stack(tmp_path_factory.mktemp("fuzz") / "data", "stub://", **FUZZ_ENV)
    stack.start_api()
    yield LiveApi(stack)
    stack.stop()


def fuzz_schema(mode: GenerationMode) -> schemathesis.schemas.BaseSchema:
    """The document the live server serves (its limits filled in), generating in one mode."""
    # Built here rather than fetched: schemathesis' fixture-loaded schemas break on pytest 9
    # (`Function._nodeid`). test_the_fuzzed_document_is_the_served_one holds the two equal.
    schema = schemathesis.openapi.from_dict(copy.deepcopy(SERVED))
    schema.config.generation.update(modes=[mode])
    schema.config.checks.negative_data_rejection.expected_statuses = REJECTIONS
    return schema


positive = fuzz_schema(GenerationMode.POSITIVE)
negative = fuzz_schema(GenerationMode.NEGATIVE)


def header(response: Response, name: str) -> str:
    return ", ".join(response.headers.get(name.lower(), []))


def assert_json_error(response: Response) -> None:
    """An error answer's body is `{"error": {"code", "message"}}`."""
    assert header(response, "Content-Type").startswith("application/json")
    error = json.loads(response.content)["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]


def must_be_refused(case: schemathesis.Case) -> bool:
    """Whether a case is invalid on the wire too. Not so: a Content-Type probe on a route that
    takes no body (a GET ignores the type of a body it does not have), and a form field whose
    `type` was changed (every multipart/form-data field is text: `{}` is a fine label)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    data = meta.phase.data
    if getattr(data, "scenario", None) in CONTENT_TYPE_PROBES:
        return "requestBody" in case.operation.definition.raw
    mutations = getattr(data, "mutations", ())
    return not (case.media_type == "multipart/form-data" and mutations and all(
        mutation.operator == OperatorKind.CHANGE_TYPE for mutation in mutations))


def describe(case: schemathesis.Case, response: Response) -> str:
    phase = case.meta.phase.data if case.meta else None
    return (f"{case.method} {case.formatted_path} -> {response.status_code} "
            f"{response.content[:300]!r}\n{getattr(phase, 'description', '')}\n"
            f"{case.as_curl_command()}")


def test_the_fuzzed_document_is_the_served_one(live_api):
    status, document = live_api.stack.get("/api/v1/openapi.json")
    assert status == 200
    assert document == SERVED
    validate(document)
    assert document["components"]["schemas"]["Grid"]["x-max-grid-points"] == 50


@positive.parametrize()
@settings(max_examples=POSITIVE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_valid_requests_get_documented_non_5xx_answers(case, live_api):
    if case.path_parameters and int(case.path_parameters["id"]) % 3:  # a third stay made up
        live_api.aim(case)
    response = case.call(base_url=live_api.base, timeout=30)
    sent["positive", case.operation.label, response.status_code] += 1
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert_json_error(response)


@negative.parametrize()
@settings(max_examples=NEGATIVE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_invalid_requests_get_a_documented_4xx_with_a_json_error(case, live_api):
    live_api.aim(case)
    response = case.call(base_url=live_api.base, timeout=30)
    refuse = must_be_refused(case)
    sent["negative" if refuse else "exempt", case.operation.label, response.status_code] += 1
    case.validate_response(response, checks=NEGATIVE_CHECKS if refuse else CHECKS)
    if refuse:
        assert 400 <= response.status_code < 500, describe(case, response)
    if response.status_code >= 400:
        assert_json_error(response)
    if response.status_code == 405:
        assert header(response, "Allow"), "a 405 names the methods the route has"


BOUNDARY = "b0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
PART = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
MALFORMED = {  # name: (body, Content-Type)
    "broken JSON": (b'{"name": ', "application/json"),
    "JSON sent as text/plain": (b'{"name": "x"}', "text/plain"),
    "a form": (b"name=x", "application/x-www-form-urlencoded"),
    "bytes without a type": (bytes(range(256)), ""),
    "multipart without a boundary": (PART.encode() + b"\r\nx\r\n", "multipart/form-data"),
    "multipart part that never ends its headers": (
        PART.encode() + f"False--{BOUNDARY}--\r\n".encode(), FORM),
    "multipart part name with a control character": (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="\x08"\r\n\r\nx\r\n'
        f"--{BOUNDARY}--\r\n".encode(), FORM),
    "multipart cut off mid-part": (PART.encode() + b"\r\n\x89PNG", FORM),
}
BODY_ROUTES = [(method.upper(), path) for path, item in SERVED["paths"].items()
               for method, operation in item.items() if "requestBody" in operation]


@pytest.mark.parametrize("malformed", MALFORMED)
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_malformed_bodies_get_a_4xx_with_a_json_error(live_api, method, path, malformed):
    body, content_type = MALFORMED[malformed]
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer = live_api.stack.request(method, live_api.url(path), data=body,
                                            headers=headers)
    assert 400 <= status < 500, (status, answer)
    assert answer["error"]["code"] and answer["error"]["message"], answer


@pytest.mark.parametrize("path", list(SERVED["paths"]))
def test_a_method_a_route_does_not_have_is_a_405_naming_those_it_has(live_api, path):
    documented = {method.upper() for method in SERVED["paths"][path] if method != "parameters"}
    request = urllib.request.Request(live_api.base + live_api.url(path), method="PATCH")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 405
    allowed = {method.strip() for method in refused.value.headers["Allow"].split(",")}
    assert allowed - {"HEAD"} == documented
    assert json.loads(refused.value.read())["error"]["code"] == "method_not_allowed"


def test_the_fuzz_sent_enough_requests():
    by_kind: Counter[str] = Counter()
    for (kind, _, _), number in sent.items():
        by_kind[kind] += number
    print(f"\nfuzz: {dict(by_kind)} requests; statuses {sorted({s for *_, s in sent})}")
    assert by_kind["positive"] >= MINIMUM_POSITIVE, by_kind
    assert by_kind["negative"] >= MINIMUM_NEGATIVE, by_kind
    assert not [status for (_, _, status) in sent if status >= 500]
