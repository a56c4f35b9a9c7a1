"""The API's OpenAPI document: checked in (docs/openapi.json), the same as the app serves, only
the API; and its docs page works with no CDN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from helpers.web import Web
from khqrpay.web.api.openapi import api_document, rendered

CHECKED_IN = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_the_checked_in_openapi_document_is_the_codes() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == rendered(api_document()), (
        "docs/openapi.json is out of date: python -m khqrpay.web.api.openapi docs/openapi.json"
    )


def test_the_document_shows_the_apis_own_error_shape_only() -> None:
    document = json.dumps(api_document())
    assert "HTTPValidationError" not in document


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_app_serves_that_document_and_a_docs_page_from_its_own_files(web: Web) -> None:
    served = httpx.get(f"{web.url}/api/v1/openapi.json").json()
    assert served == json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    assert all(path.startswith("/api/v1/") for path in served["paths"])
    assert served["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    page = httpx.get(f"{web.url}/api/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    assert all(asset.startswith("/") for asset in assets)  # nothing from another site
    for asset in assets:
        assert httpx.get(f"{web.url}{asset}").status_code == 200, asset
