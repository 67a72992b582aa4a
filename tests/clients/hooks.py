"""Schemathesis hooks for the run of scripts/clients.sh against a served `markets` binary.

Authentication: every generated request carries an administrator's bearer token, logged in
through the API. Schemathesis caches it and, on a 401 (a generated logout revoked it), logs in
again and replays the request, so a logout in the stateful phase cannot strand the run.

The rest adjusts *positive* cases (those the document calls valid) for the rules the document
states only in prose, because JSON Schema cannot relate two parameters or check a signature:

- offset paging (`page`, `page_size`) and cursor paging (`cursor`, `limit`) are not mixed, and
  `page * page_size` stays within 10,000 rows;
- a `cursor` is one the service minted (the stateful phase follows `meta.next_cursor`; a
  generated one is dropped);
- a `volume` is rounded to its two decimals: the generator builds multiples of 0.01 in binary
  floating point (`123456789 * 0.01` is `1234567.8900000001`), which the document does not call
  valid either;
- an `Idempotency-Key` is not reused with another market (422 `idempotency_key_reused`, by
  design): the generated key gets a digest of the body appended, so a repeat of one body with
  one key is still replayed;
- a login in the examples phase names the stand-in user's email and password, so that the
  successful login's response is checked against its schema too (generated credentials match
  no account: every other login is the documented 401).

Negative cases are left as generated: each breaks a documented constraint, and must be refused.

The run's administrator keeps its role: a role change aimed at it is sent to a stand-in user
instead. The service refuses to demote its last administrator (409), but the stateful phase may
first promote a user it registered, after which demoting the run's administrator would succeed
and leave every later case without the `admin` permission.
"""

import hashlib
import json
import os

import requests
import schemathesis

BASE = os.environ["MARKETS_BASE"]
ADMIN_EMAIL = os.environ["MARKETS_ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["MARKETS_ADMIN_PASSWORD"]
ADMIN_ID = os.environ["MARKETS_ADMIN_ID"]
STAND_IN_ID = os.environ["MARKETS_STAND_IN_ID"]
STAND_IN_EMAIL = os.environ["MARKETS_STAND_IN_EMAIL"]
STAND_IN_PASSWORD = os.environ["MARKETS_STAND_IN_PASSWORD"]
MAX_ROWS = 10_000
ROLE_PATH = "/api/v1/users/{id}/role"
LOGIN_PATH = "/api/v1/auth/login"


@schemathesis.auth()
class AdminToken:
    """A fresh administrator token, from `POST /api/v1/auth/login`."""

    def get(self, case, context):
        response = requests.post(
            f"{BASE}/api/v1/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["data"]["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _paging_within_the_contract(query):
    keyset = "cursor" in query or "limit" in query
    if keyset:
        query.pop("page", None)
        query.pop("page_size", None)
    page, size = query.get("page"), query.get("page_size", 20)
    if isinstance(page, int) and isinstance(size, int) and size > 0 and page * size > MAX_ROWS:
        query["page"] = max(1, MAX_ROWS // size)
    return query


@schemathesis.hook
def map_case(context, case):
    if not _is_positive(case):
        return case
    operation = case.operation
    if operation.path == LOGIN_PATH and case.meta.phase.name == "examples":
        case.body = {"email": STAND_IN_EMAIL, "password": STAND_IN_PASSWORD}
    if case.query and "cursor" in case.query:
        # A cursor the service did not mint is refused by design: it is signed.
        case.query = {name: value for name, value in case.query.items() if name != "cursor"}
    if operation.method.upper() == "GET" and operation.path == "/api/v1/markets" and case.query:
        case.query = _paging_within_the_contract(dict(case.query))
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("volume"), float):
        body["volume"] = round(body["volume"], 2)
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str):
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        case.headers["Idempotency-Key"] = f"{key[:238]}-{digest}"
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.method.upper() != "PUT" or case.operation.path != ROLE_PATH:
        return
    if str((case.path_parameters or {}).get("id")) == ADMIN_ID:
        case.path_parameters["id"] = STAND_IN_ID
