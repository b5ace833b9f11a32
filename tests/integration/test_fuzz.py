"""Bad input gets a clear error, never a 500 (DESIGN "Standards"), on SQLite and PostgreSQL:
schemathesis over the service's own OpenAPI document, against a real uvicorn, in its examples,
coverage and fuzzing phases, with NUL bytes allowed in what it generates, a fixed seed and a
bounded time; the checks are `not_a_server_error` and the response schemas. Then the NUL cases
that were found from outside by hand, one by one."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from tests import factories

pytestmark = pytest.mark.integration
ST = Path(sys.executable).parent / "st"
SECONDS = 75  # per backend: the whole run stays inside CI's budget


async def known_ids(server: str, keys) -> dict[str, str]:
    """A contact (consent and an order) and a campaign, so that the operations on one are
    reached, not only answered 404: schemathesis is given their ids."""
    async with httpx.AsyncClient(base_url=server) as client:
        contact = await client.post(
            "/api/v1/contacts",
            json=factories.contact(consents=[factories.consent()], orders=[factories.order()]),
            headers=keys["shop"],
        )
        campaign = await client.post(
            "/api/v1/campaigns",
            json={
                "name": "f",
                "purpose": "newsletter",
                "categories": ["tea"],
                "subject": "s",
                "template": "newsletter.html",
            },
            headers=keys["marketer"],
        )
    return {"contact_id": contact.json()["id"], "campaign_id": campaign.json()["id"]}


async def test_bad_input_schemathesis_finds_no_server_error(server, keys, tmp_path):
    report = tmp_path / "junit.xml"
    config = tmp_path / "schemathesis.toml"
    ids = await known_ids(server, keys)
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items())
    )
    process = await asyncio.create_subprocess_exec(
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{server}/schema/openapi.json",
        "--phases",
        "examples,coverage,fuzzing",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--seed",
        "20261202",
        "--max-time",
        str(SECONDS),
        "--max-examples",
        "150",
        "--workers",
        "1",
        "--generation-allow-x00",
        "true",
        "--generation-database",
        "none",
        "--no-color",
        "--header",
        keys["admin"]["Authorization"].join(("Authorization: ", "")),
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), SECONDS + 120)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/contacts/x/why?campaign_id=%00",
        "/api/v1/contacts/%00",
        "/api/v1/suppressions?email=a%00@example.be",
        "/api/v1/contacts/x/why?campaign_id=%ff",
    ],
)
async def test_bad_input_a_nul_or_non_utf8_in_a_path_or_query_is_422(server, keys, path):
    async with httpx.AsyncClient(base_url=server) as client:
        response = await client.get(path, headers=keys["admin"])
    assert response.status_code == 422, response.text
    assert response.json()["extra"]["reason"] == "unstorable_text"


@pytest.mark.parametrize("text", ["Ja\x00nee", "Ja \ud800 nee"])
async def test_bad_input_a_nul_or_lone_surrogate_in_a_body_is_422_and_stores_nothing(
    app_client, keys, text
):
    body = factories.contact(consents=[factories.consent(wording=text)])
    raw = json.dumps(body).encode()  # ASCII, a lone surrogate as its \\u escape
    headers = {**keys["shop"], "Content-Type": "application/json"}
    response = await app_client.post("/api/v1/contacts", content=raw, headers=headers)
    # A NUL is refused by the model (422, naming the field); a lone surrogate is not even JSON
    # to the parser (400, malformed).
    assert response.status_code == (422 if "\x00" in text else 400), response.text
    if "\x00" in text:
        assert response.json()["extra"]["field"] == "consents[0].wording"
    found = await app_client.get("/api/v1/suppressions?email=an@example.be", headers=keys["admin"])
    assert found.status_code == 200
    listed = await app_client.get("/api/v1/campaigns", headers=keys["admin"])
    assert listed.status_code == 200
    detail = await app_client.post(
        "/api/v1/contacts", json=factories.contact(), headers=keys["shop"]
    )
    assert detail.status_code == 201  # nothing of the refused push was stored
