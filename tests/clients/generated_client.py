"""Drives the service through a client generated from its /openapi.json by openapi-python-client:
register, login, create, get, list (both paging styles), search and delete, checking each
response's status and fields as the generated models parsed them. A document that does not
tell the truth shows here as a model that fails to parse or a field that does not match.

scripts/clients.sh generates the client as the package `client` and puts its folder on
PYTHONPATH. The administrator of the run (MARKETS_ADMIN_EMAIL, MARKETS_ADMIN_PASSWORD) deletes,
which a new user may not.

Usage: generated_client.py BASE_URL (exits non-zero on the first failure)
"""

import os
import sys
import time
import uuid
from http import HTTPStatus

from client import AuthenticatedClient, Client
from client.api.auth import login, register
from client.api.markets import (
    create_market,
    delete_market,
    get_market,
    list_markets,
    search_markets,
)
from client.api.users import get_me
from client.models import (
    CreateMarketRequest,
    CursorMeta,
    ErrorBody,
    ErrorCode,
    LoginRequest,
    MarketStatus,
    OffsetMeta,
    RegisterRequest,
    Role,
)

# How long the market's embedding, scheduled by its creation, may take to be searchable.
SEARCH_DEADLINE_S = 60


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)
    print(f"ok: {what}")


def expect(response, status, what):
    """The parsed body of `response`, which must have `status`."""
    if response.status_code != status:
        content = response.content[:500]
        raise Failure(f"{what}: {response.status_code}, not {status}: {content!r}")
    return response.parsed


def log_in(base, email, password):
    body = expect(
        login.sync_detailed(client=Client(base), body=LoginRequest(email=email, password=password)),
        HTTPStatus.OK,
        f"login as {email}",
    )
    check(body.data.token_type == "Bearer", "login: token_type Bearer")
    check(body.data.expires_in == 1800, "login: expires_in 1800")
    return AuthenticatedClient(base, token=body.data.access_token)


def search_hits(anonymous, query, market_id):
    """The search hits for `query` once they include `market_id` (its embedding is written by
    a background job), or the last ones within the deadline."""
    deadline = time.monotonic() + SEARCH_DEADLINE_S
    while True:
        response = search_markets.sync_detailed(client=anonymous, query=query, limit=50)
        body = expect(response, HTTPStatus.OK, "search")
        if any(hit.id == market_id for hit in body.data) or time.monotonic() > deadline:
            return response, body
        time.sleep(0.5)


def main(base):
    anonymous = Client(base)
    run = uuid.uuid4().hex[:12]
    email = f"client-{run}@example.com"
    password = "generated-client-password"

    # Register: the email is stored trimmed and lower-cased; a new user has role `user`.
    user = expect(
        register.sync_detailed(
            client=anonymous,
            body=RegisterRequest(
                email=f"  Client-{run}@Example.COM ", password=password, display_name="Generated"
            ),
        ),
        HTTPStatus.CREATED,
        "register",
    ).data
    check(user.email == email, "register: email normalised")
    check(user.display_name == "Generated" and user.role == Role.USER, "register: name and role")
    duplicate = register.sync_detailed(
        client=anonymous,
        body=RegisterRequest(email=email, password=password, display_name="Again"),
    )
    refused = expect(duplicate, HTTPStatus.CONFLICT, "register again")
    check(
        isinstance(refused, ErrorBody) and refused.code == ErrorCode.CONFLICT,
        "register again: conflict",
    )

    wrong = login.sync_detailed(
        client=anonymous, body=LoginRequest(email=email, password="not-the-password")
    )
    expect(wrong, HTTPStatus.UNAUTHORIZED, "login with a wrong password")
    writer = log_in(base, email, password)
    me = expect(get_me.sync_detailed(client=writer), HTTPStatus.OK, "me").data
    check(me.id == user.id, "me: the registered user")

    # Create.
    name = f"Generated client market {run}"
    created_response = create_market.sync_detailed(
        client=writer,
        body=CreateMarketRequest(
            name=f"  {name} ", description="Made by the generated client.", volume=1234.5
        ),
        idempotency_key=f"generated-{run}",
    )
    created = expect(created_response, HTTPStatus.CREATED, "create").data
    check(created.name == name, "create: name trimmed")
    check(
        created.status == MarketStatus.OPEN and created.volume == 1234.5,
        "create: status and volume",
    )
    check(
        created.creator.id == user.id and created.creator.display_name == "Generated",
        "create: creator",
    )
    check(
        created_response.headers.get("location") == f"/api/v1/markets/{created.id}",
        "create: Location",
    )
    tag = created_response.headers.get("etag")
    check(bool(tag), "create: ETag")

    # Get, then the same again under If-None-Match.
    got_response = get_market.sync_detailed(created.id, client=anonymous)
    got = expect(got_response, HTTPStatus.OK, "get").data
    check(
        (got.id, got.name, got.description, got.volume, got.created_at)
        == (created.id, name, "Made by the generated client.", 1234.5, created.created_at),
        "get: the market created",
    )
    check(got_response.headers.get("etag") == tag, "get: the ETag of the create")
    check(got_response.headers.get("x-cache") in {"HIT", "MISS"}, "get: X-Cache")
    unchanged = get_market.sync_detailed(created.id, client=anonymous, if_none_match=tag)
    check(unchanged.status_code == HTTPStatus.NOT_MODIFIED and not unchanged.content, "get: 304")

    # List: offset paging (the default), then cursor paging.
    listed = expect(
        list_markets.sync_detailed(client=anonymous, page=1, page_size=100),
        HTTPStatus.OK,
        "list by page",
    )
    check(isinstance(listed.meta, OffsetMeta), "list by page: offset meta")
    check(listed.meta.page == 1 and listed.meta.page_size == 100, "list by page: page and size")
    check(listed.meta.total >= 1, "list by page: total")
    check(
        any(item.id == created.id and item.name == name for item in listed.data),
        "list by page: the market",
    )
    keyset = expect(
        list_markets.sync_detailed(client=anonymous, limit=1),
        HTTPStatus.OK,
        "list by cursor",
    )
    check(
        isinstance(keyset.meta, CursorMeta) and len(keyset.data) == 1,
        "list by cursor: one item, cursor meta",
    )
    check(keyset.data[0].id == created.id, "list by cursor: newest first")

    # Search.
    response, found = search_hits(anonymous, name, created.id)
    check(
        response.headers.get("x-search-mode") in {"semantic", "fallback"},
        "search: X-Search-Mode",
    )
    hit = next((hit for hit in found.data if hit.id == created.id), None)
    check(hit is not None, "search: the market is found")
    check(0 <= hit.score <= 1, "search: score within 0..1")
    scores = [hit.score for hit in found.data]
    check(scores == sorted(scores, reverse=True), "search: best first")

    # Delete: a user may not; an administrator may.
    denied = delete_market.sync_detailed(created.id, client=writer)
    refused = expect(denied, HTTPStatus.FORBIDDEN, "delete as a user")
    check(refused.code == ErrorCode.PERMISSION_DENIED, "delete as a user: permission_denied")
    admin = log_in(base, os.environ["MARKETS_ADMIN_EMAIL"], os.environ["MARKETS_ADMIN_PASSWORD"])
    stale = delete_market.sync_detailed(created.id, client=admin, if_match='"stale"')
    expect(stale, HTTPStatus.PRECONDITION_FAILED, "delete with a stale If-Match")
    deleted = delete_market.sync_detailed(created.id, client=admin, if_match=tag)
    expect(deleted, HTTPStatus.NO_CONTENT, "delete")
    gone = expect(
        get_market.sync_detailed(created.id, client=anonymous),
        HTTPStatus.NOT_FOUND,
        "get after delete",
    )
    check(gone.code == ErrorCode.NOT_FOUND, "get after delete: not_found")
    print("generated client: every step passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Failure as failure:
        print(f"generated client FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
