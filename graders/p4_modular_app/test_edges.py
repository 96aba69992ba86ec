"""Grader for problem 4, the edges of the contract: hostile tokens on every protected route,
logins with passwords over bcrypt's 72 bytes, bounds probed from both sides (padded,
multi-byte), ids and order after every kind of change, a PUT that replaces, the redirects a
test client follows silently, and the same app started twice in one process.

The app runs in this check's app host (workbook/hostkit.py); what the grader needs from
inside it (the strings the package holds) comes from the probes in probes.py.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from workbook.grading import expect, expect_json, expect_status, json_body, rng, show

# bcrypt hashes at most 72 bytes; bcrypt 5 raises ValueError for more (statement: 401, never 500).
BCRYPT_MAX_BYTES = 72
# Characters of 2, 3 and 4 bytes in UTF-8: a limit in characters is not one in bytes.
MULTI_BYTE = ["é", "ß", "€", "中", "🙂", "𝄞"]
# Every protected route of the statement; {item} and {user} are filled in per check.
PROTECTED = [
    ("GET", "/items"),
    ("POST", "/items"),
    ("GET", "/items/{item}"),
    ("PUT", "/items/{item}"),
    ("DELETE", "/items/{item}"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/users"),
    ("DELETE", "/admin/users/{user}"),
]
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
# Only these two redirects keep the method and the body (RFC 9110 §15.4.8, §15.4.9).
METHOD_KEEPING_REDIRECTS = (307, 308)


# --- tokens, built by hand ------------------------------------------------------------


def b64url_json(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def signing_key(token: str, held: list[str]) -> tuple[str, str] | None:
    """The app's HMAC key and algorithm, found by verifying a token the app issued against
    `held`, the strings its modules hold; None if the key is not among them."""
    from jose import jwt

    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except Exception:  # noqa: BLE001 - whatever the learner's token makes python-jose raise
        return None
    if algorithm not in HMAC_ALGORITHMS:
        return None
    for text in held:
        try:
            jwt.decode(token, text, algorithms=[algorithm], options={"verify_exp": False})
        except Exception:  # noqa: BLE001, S112 - not the key; try the next string
            continue
        return text, algorithm
    return None


def hostile_tokens(real: str, token_type: str, held: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Tokens every protected route must refuse with 401, each with what is wrong with it: those
    problem 2's grader sends, then odd claims (only when the app's key is among `held`, the
    strings the app package holds, to sign them)."""
    from jose import jwt

    now = int(time.time())
    claims = {"sub": "admin", "type": token_type, "exp": now + 600}
    head, _, signature = real.rpartition(".")
    header = head.split(".")[0]
    tokens = [
        (f"not-a-jwt-{rng.randrange(1000)}", "a token that is not a JWT"),
        (rng.choice(["abc.def", "x.y.z", "Zm9v.YmFy.YmF6", "..."]), "a token of dots and junk"),
        (
            jwt.encode(claims, f"another-key-{rng.randrange(10**6)}", algorithm="HS256"),
            "a token signed with another key",
        ),
        (f"{header}.{b64url_json(claims)}.{signature}", "a token whose payload was changed to admin's after signing"),
        (f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}.", "a token with alg none"),
    ]
    found = signing_key(real, held)
    if found is None:
        return tokens, []
    key, algorithm = found

    def signed(payload: Any) -> str:
        return jwt.encode(payload, key, algorithm=algorithm) if isinstance(payload, dict) else sign_raw(payload)

    def sign_raw(payload: Any) -> str:
        import hashlib
        import hmac

        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
        signing_input = f"{b64url_json({'alg': algorithm, 'typ': 'JWT'})}.{b64url_json(payload)}"
        mac = hmac.new(key.encode(), signing_input.encode("ascii"), digest).digest()
        return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    ghost = f"ghost_{rng.randrange(10**6)}"
    without_sub = {k: v for k, v in claims.items() if k != "sub"}
    tokens += [
        (
            signed({**claims, "exp": now - rng.randrange(3600, 86400)}),
            "a correctly signed token that expired hours ago",
        ),
        (signed(without_sub), "a correctly signed token without sub"),
        (signed({**claims, "sub": ghost}), f"a correctly signed token for {ghost}, who does not exist"),
    ]
    odd_claims = [
        (signed({**claims, "sub": ["admin"]}), 'a correctly signed token whose sub is the list ["admin"]'),
        (signed({**claims, "exp": "never"}), 'a correctly signed token whose exp is the string "never"'),
        (signed(["admin", token_type]), "a correctly signed token whose payload is a list, not an object"),
    ]
    return tokens, odd_claims


# --- hostile input --------------------------------------------------------------------


def test_hostile_tokens_are_401_everywhere(kit: Any) -> None:
    """Every protected route and /auth/refresh answer 401, never 500, to forged, broken or odd tokens"""
    account = kit.user()
    item = kit.create_item(account)
    victim = kit.register()[0]
    paths = {"item": str(item["id"]), "user": victim}
    # Why not raise: a crash in the learner's guard must show as the status the client sees.
    with kit.host.client(raise_server_exceptions=False) as api:
        expect_hostile_tokens_refused(kit, api, account, paths)


def expect_hostile_tokens_refused(kit: Any, api: Any, account: Any, paths: dict[str, str]) -> None:
    held = kit.host.probe("module_strings", max_chars=512)
    everywhere, odd_claims = hostile_tokens(account.access, "access", held)
    # Why odd claims go to one route per router: the guard that reads claims is the shared dependency.
    sent = [(token, why, PROTECTED) for token, why in everywhere]
    sent += [(token, why, [PROTECTED[0], PROTECTED[5]]) for token, why in odd_claims]
    for token, why, routes in sent:
        for method, template in routes:
            path = template.format(**paths)
            body = kit.new_item() if method in ("POST", "PUT") else None
            expect_status(
                api.request(method, path, json=body, headers=kit.bearer(token)),
                401,
                f"{method} {path} did not refuse {why} with 401: every protected route must answer 401 to it, "
                "never 500 and never with the data.",
            )
    for token, why in sum(hostile_tokens(kit.refresh_token(account), "refresh", held), []):
        expect_status(
            api.post("/auth/refresh", json={"refresh_token": token}),
            401,
            f"POST /auth/refresh did not refuse {why} with 401: it must answer 401 to it, never 500.",
        )


def test_login_overlong_password_is_401(kit: Any) -> None:
    """POST /auth/login answers 401, never 500, to a password over 72 bytes (multi-byte too), for a user or not"""
    username, password = kit.register()
    wide = rng.choice(MULTI_BYTE[:2])  # two bytes each: 37 of them are 74 bytes
    attempts = [
        (username, password + "x" * (BCRYPT_MAX_BYTES + 1 - len(password)), "73 bytes starting with the password"),
        (kit.admin_name, wide * 37, f"37 characters {wide!r}, 74 bytes"),
        (kit.admin_name, kit.admin_password + "!" * rng.randrange(100, 300), "a long password"),
        (kit.new_username(), wide * 40, "an unknown user with an 80-byte password"),
    ]
    with kit.host.client(raise_server_exceptions=False) as api:
        for who, secret, why in attempts:
            response = api.post("/auth/login", data={"username": who, "password": secret})
            expect_status(
                response,
                401,
                f"A password over 72 bytes was not refused with 401 ({why}): no stored password is that long, "
                "and bcrypt 5 raises ValueError for it, so refuse it before verifying.",
            )


# --- bounds, from both sides ----------------------------------------------------------


def test_register_bounds_padded_and_multi_byte(kit: Any) -> None:
    """Register refuses padded usernames and passwords over 72 bytes (multi-byte too), and keeps a padded password"""
    name = kit.new_username()
    for body, why in (
        ({"username": " " + name, "password": kit.new_password()}, "a username with a space before it"),
        ({"username": name + " ", "password": kit.new_password()}, "a username with a space after it"),
        ({"username": name, "password": " " + "p" * BCRYPT_MAX_BYTES}, "a password of 73 bytes, the first a space"),
        ({"username": name, "password": "€" * 25}, "25 characters '€', 75 bytes"),
        ({"username": name, "password": "🙂" * 19}, "19 characters '🙂', 76 bytes"),
    ):
        expect_status(
            kit.api.post("/auth/register", json=body),
            422,
            f"The registration was not refused: {why} must be refused with 422.",
        )
    for password, why in (("€" * 24, "24 characters '€', 72 bytes"), ("  " + "p" * 6, "8 bytes, two of them spaces")):
        username = kit.new_username()
        expect_status(
            kit.api.post("/auth/register", json={"username": username, "password": password}),
            201,
            f"A valid registration was refused ({why}): it must answer 201.",
        )
        expect_status(
            kit.login_response(username, password),
            200,
            f"Logging in with the password exactly as registered ({why}) failed: store it as sent, never stripped.",
        )


def test_create_item_accepts_every_valid_form(kit: Any) -> None:
    """POST /items keeps names of 1 or 100 characters (multi-byte, padded) as sent; a left-out description is null"""
    account = kit.user()
    price = rng.randrange(0, 10000) / 100
    wide = rng.choice(MULTI_BYTE)
    for sent, stored, why in (
        ({"name": wide * 100, "price": price}, None, f"100 characters {wide!r} are 100 characters"),
        ({"name": "  " + kit.new_item()["name"] + " ", "price": price}, None, "spaces around a name are part of it"),
        ({"name": rng.choice("xyz"), "description": "", "price": 0}, "", "a one-character name, empty description"),
        ({"name": "tab\there", "description": "line\nbreak", "price": price}, "line\nbreak", "a tab and a newline"),
    ):
        response = kit.api.post("/items", json=sent, headers=account.headers)
        expect_status(response, 201, f"A valid item was refused ({why}): it must be created with 201.")
        body = json_body(response)
        expected = {"id": body.get("id") if isinstance(body, dict) else "<int>", "description": stored, **sent}
        expected["owner"] = account.username
        expect(
            body == expected,
            f"The item was created, but not as sent ({why}); a left-out description is null.",
            expected=show(expected),
            got=show(body),
        )


def test_put_replaces_description(kit: Any) -> None:
    """PUT /items/{id} without description replaces the item: the old description becomes null, not kept"""
    account = kit.user()
    created = kit.create_item(account, {**kit.new_item(), "description": f"old {rng.randrange(10**6)}"})
    change = {"name": kit.new_item()["name"], "price": rng.randrange(0, 10000) / 100}
    expected = {"id": created["id"], **change, "description": None, "owner": account.username}
    response = kit.api.put(f"/items/{created['id']}", json=change, headers=account.headers)
    expect_status(response, 200, "The owner's PUT without description should answer 200.")
    expect_json(
        response,
        expected,
        "PUT replaces the item: a description left out becomes null. Merging the sent fields into the old "
        "item (model_dump(exclude_unset=True)) is a PATCH, not a PUT.",
    )
    expect_json(
        kit.api.get(f"/items/{created['id']}", headers=account.headers),
        expected,
        "After the PUT, GET /items/{id} should show the replaced item, description null.",
    )


# --- identity and order after every change -------------------------------------------


def test_item_ids_never_reused_and_order_kept(kit: Any) -> None:
    """After PUT and DELETE, new items get ids never used before and GET /items stays in id order"""
    account = kit.user()
    created = [kit.create_item(account) for _ in range(rng.randrange(3, 6))]

    def listed_in_order(what: str) -> None:
        expected = sorted(created, key=lambda item: item["id"])
        expect_json(kit.api.get("/items?limit=100", headers=account.headers), expected, what)

    middle = created[len(created) // 2]
    change = kit.new_item()
    response = kit.api.put(f"/items/{middle['id']}", json=change, headers=account.headers)
    expect_status(response, 200, "The owner's PUT should answer 200.")
    middle.update(change)
    listed_in_order("After a PUT the item keeps its place: GET /items lists by id.")
    newest = max(created, key=lambda item: item["id"])
    expect_status(kit.api.delete(f"/items/{newest['id']}", headers=account.headers), 204, "DELETE should answer 204.")
    created.remove(newest)
    listed_in_order("After a DELETE, GET /items lists the remaining items by id.")
    late = kit.create_item(account)
    expect(
        late["id"] > newest["id"],
        f"The id {late['id']} was given again: item {newest['id']} was deleted, and a new item must get an id "
        "never used before (keep a counter; len(items) + 1 or max(ids) + 1 reuse ids).",
        expected=f"an id above {newest['id']}",
        got=show(late),
    )
    created.append(late)
    listed_in_order("After a DELETE and a new POST, GET /items lists every item by id.")


def test_new_item_reads_back_among_others(kit: Any) -> None:
    """With other users' items already stored, GET /items/{id} answers the new item under the id POST gave it"""
    others = kit.user()
    for _ in range(rng.randrange(1, 5)):
        kit.create_item(others)
    account = kit.user()
    created = kit.create_item(account)
    expect_json(
        kit.api.get(f"/items/{created['id']}", headers=account.headers),
        created,
        "GET /items/{id} with the id POST /items answered should give back that item (other items were "
        "stored before it: never answer a fixed or counted id).",
    )


# --- what the test client would hide -------------------------------------------------


def test_items_root_redirects_only_with_307(kit: Any) -> None:
    """GET and POST /items answer themselves, or redirect with 307/308 to /items/ keeping the query"""
    account = kit.user()
    # Why not follow: a test client follows any redirect silently; the statement allows only some.
    api = kit.host.client(follow_redirects=False)
    limit = rng.randrange(2, 9)
    for method, path, body, done in (
        ("GET", f"/items?skip=0&limit={limit}", None, 200),
        ("POST", "/items", kit.new_item(), 201),
    ):
        response = api.request(method, path, json=body, headers=account.headers)
        if response.status_code == done:
            continue
        wanted = "/items/" + path.partition("/items")[2].lstrip("/")
        location = response.headers.get("location", "")
        expect(
            response.status_code in METHOD_KEEPING_REDIRECTS and location.endswith(wanted),
            f"{method} {path} answered status {response.status_code}, expected {done} or a 307 to {wanted}: "
            "only a 307 or 308 keeps the method and the body (a 301, 302 or 303 turns a POST into a GET).",
            sent=f"{method} {path} (redirects not followed)",
            expected=f"status {done}, or status 307 with Location ending {wanted}",
            got=f"status {response.status_code}, Location {show(location)}",
        )


# --- state lifetimes -----------------------------------------------------------------


def test_app_started_twice_keeps_one_admin(host: Any) -> None:
    """Starting the same app twice in one process leaves exactly one admin, who can log in"""
    for start in (1, 2):
        host.serve()
        with host.client() as api:
            response = api.post("/auth/login", data={"username": "admin", "password": "admin-secret"})
            expect_status(response, 200, f"After start number {start} of the app, admin / admin-secret must log in.")
            token = json_body(response).get("access_token") if isinstance(json_body(response), dict) else None
            users = api.get("/admin/users", headers={"Authorization": f"Bearer {token}"})
            expect_status(users, 200, f"After start number {start}, the admin's token should open GET /admin/users.")
            listed = json_body(users)
            admins = (
                [u for u in listed if isinstance(u, dict) and u.get("username") == "admin"]
                if isinstance(listed, list)
                else []
            )
            expect(
                len(admins) == 1,
                f"After start number {start} of the same app, GET /admin/users should list admin once: "
                "create the admin once, or only if it is missing.",
                expected='one {"username": "admin", "role": "admin"}',
                got=show(listed),
            )
        # Why keep the listener: stopping uvicorn closes the socket it served on; start 2 serves on a copy.
        host.probe("keep_listener")
        host.stop()
