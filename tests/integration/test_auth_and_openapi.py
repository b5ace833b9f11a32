"""API keys and scopes (401/403), and the OpenAPI document's completeness."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from campaigns.apikeys import revoke_key
from campaigns.models import ApiKey
from tests import factories

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer mk_000000000000_x"],
)
async def test_missing_or_bad_key_is_401(app_client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await app_client.post("/api/v1/contacts", json=factories.contact(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"status_code", "detail", "extra"}


async def test_tampered_key_is_401(app_client, keys):
    good = keys["shop"]["Authorization"]
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    response = await app_client.post(
        "/api/v1/contacts", json=factories.contact(), headers={"Authorization": tampered}
    )
    assert response.status_code == 401


async def test_revoked_key_is_401(app_client, keys, services, clock):
    key_id = keys["shop"]["Authorization"].split("_")[1]
    await services.db.transaction(lambda s: revoke_key(s, key_id, clock))
    response = await app_client.post(
        "/api/v1/contacts", json=factories.contact(), headers=keys["shop"]
    )
    assert response.status_code == 401


async def test_keys_are_stored_hashed(app_client, keys, services):
    async with services.db.sessions() as session:
        stored = (await session.execute(sa.select(ApiKey.key_hash))).scalars().all()
    secrets = [h["Authorization"].split("_", 2)[2] for h in keys.values()]
    assert len(stored) == len(keys) == 4
    assert not any(secret in digest for secret in secrets for digest in stored)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("post", "/api/v1/contacts", {"shop", "admin"}),
        ("post", "/api/v1/contacts/batch", {"shop", "admin"}),
        ("post", "/api/v1/consents", {"shop", "admin"}),
        ("get", "/api/v1/contacts/some-id", {"marketer", "admin"}),
        ("post", "/api/v1/bounces", {"relay", "admin"}),
        ("get", "/api/v1/review", {"admin"}),
        ("post", "/api/v1/review/1", {"admin"}),
    ],
)
async def test_wrong_scope_is_403(app_client, keys, method, path, allowed):
    for scope, headers in keys.items():
        kwargs = {"json": {"contacts": [factories.contact()]}} if method == "post" else {}
        response = await getattr(app_client, method)(path, headers=headers, **kwargs)
        if scope in allowed:
            assert response.status_code not in (401, 403), (scope, response.text)
        else:
            assert response.status_code == 403, scope
            assert response.json()["status_code"] == 403


async def test_openapi_document_is_complete(app_client):
    response = await app_client.get("/schema/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    expected = {
        ("post", "/api/v1/contacts"): {"201", "200", "400", "401", "403", "409", "413", "422"},
        ("post", "/api/v1/contacts/batch"): {"207", "400", "401", "403", "413", "422"},
        ("post", "/api/v1/consents"): {"201", "200", "400", "401", "403", "404", "413", "422"},
        ("get", "/api/v1/contacts/{contact_id}"): {"200", "400", "401", "403", "404"},
    }
    for (method, path), codes in expected.items():
        operation = doc["paths"][path][method]
        assert codes <= set(operation["responses"]), (path, set(operation["responses"]))
        for code, spec in operation["responses"].items():
            if code >= "400":
                assert spec["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"
                }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    schemas = doc["components"]["schemas"]
    for name in (
        "ContactIn",
        "OrderIn",
        "ConsentEvidenceIn",
        "SourceIn",
        "ContactOut",
        "BasisOut",
        "RefusedOut",
        "BatchOut",
        "ConsentIn",
        "ConsentOut",
        "ContactDetailOut",
        "ErrorOut",
    ):
        assert name in schemas
    batch_items = schemas["ContactBatchIn"]["properties"]["contacts"]
    assert batch_items["items"] == {"$ref": "#/components/schemas/ContactIn"}
    assert batch_items["maxItems"] == 1000
    text = response.text
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
