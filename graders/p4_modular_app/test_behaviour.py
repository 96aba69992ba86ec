"""Grader for problem 4, first half: the behaviour of the whole API.

Each check gets an app host that imported the learner's `app.main` afresh (so the store
starts with only the admin), registers a few random users and talks to the served app.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from workbook.grading import expect, expect_created, expect_json, expect_status, fail, json_body, rng, show

ACCESS_LIFETIME_S = 15 * 60
REFRESH_LIFETIME_S = 7 * 24 * 3600
CLOCK_SLACK_S = 120
# Characters of 2, 3 and 4 bytes in UTF-8: a limit of 100 characters is not one of 100 bytes.
MULTI_BYTE = ["é", "ß", "€", "中", "🙂", "𝄞"]


# --- helpers --------------------------------------------------------------------------


def claims_of(token: str, what: str) -> dict[str, Any]:
    from jose import JWTError, jwt

    try:
        claims = jwt.get_unverified_claims(token)
    except JWTError as exc:
        fail(f"The {what} should be a JWT (header.payload.signature).", expected="a JWT", got=f"{token[:60]!r} ({exc})")
    expect(isinstance(claims, dict), f"The {what}'s payload should be a JSON object.", got=show(claims))
    return claims


@contextlib.contextmanager
def clock_moved_ahead(host: Any, seconds: float) -> Iterator[None]:
    """Make python-jose, in the app host, believe `seconds` have passed, so tokens expire
    without waiting."""
    host.probe("move_jose_clock", seconds=seconds)
    try:
        yield
    finally:
        host.probe("move_jose_clock", seconds=0)


def forged_token(username: str, token_type: str) -> str:
    """A well-formed token for a real user, but signed with a key the app does not know."""
    from jose import jwt

    claims = {"sub": username, "type": token_type, "exp": int(time.time()) + 600}
    return jwt.encode(claims, f"not-your-key-{rng.randrange(10**9)}", algorithm="HS256")


def tampered(token: str) -> str:
    head, _, signature = token.rpartition(".")
    if not signature:
        return token + "x"
    flipped = "A" if signature[0] != "A" else "B"
    return f"{head}.{flipped}{signature[1:]}"


def expect_item(body: Any, sent: dict[str, Any], owner: str, what: str) -> None:
    expected = {"id": body.get("id") if isinstance(body, dict) else "<int>", **sent, "owner": owner}
    expect(body == expected, what, expected=show(expected), got=show(body))


# --- auth: register and log in -------------------------------------------------------


def test_admin_exists_at_start(kit: Any) -> None:
    """The user admin / admin-secret exists from the start and can log in with the OAuth2 form"""
    kit.admin()


def test_login_returns_both_tokens(kit: Any) -> None:
    """POST /auth/login answers 200 with access_token, refresh_token and token_type "bearer\""""
    username, password = kit.register()
    response = kit.login_response(username, password)
    expect_status(response, 200, "Logging in with the right password should answer 200.")
    body = json_body(response)
    ok = (
        isinstance(body, dict)
        and set(body) == {"access_token", "refresh_token", "token_type"}
        and isinstance(body.get("access_token"), str)
        and isinstance(body.get("refresh_token"), str)
        and body.get("token_type") == "bearer"
    )
    expect(
        ok,
        "POST /auth/login answered another body than exactly the two tokens and the token type.",
        sent=f"POST /auth/login with form username={username}",
        expected='{"access_token": "<jwt>", "refresh_token": "<jwt>", "token_type": "bearer"}',
        got=show(body),
    )


def test_register_answers_201(kit: Any) -> None:
    """POST /auth/register answers 201 with {username, role: "user"}, and the new user can log in"""
    username, password = kit.new_username(), kit.new_password()
    response = kit.api.post("/auth/register", json={"username": username, "password": password})
    expect_status(response, 201, "Registering a new user should answer 201 Created.")
    expect_json(response, {"username": username, "role": "user"}, 'The answer should be the new user, role "user".')
    kit.login(username, password)


def test_register_taken_username_is_409(kit: Any) -> None:
    """Registering a username that is taken (including "admin") answers 409"""
    username, _ = kit.register()
    for taken in (username, kit.admin_name):
        response = kit.api.post("/auth/register", json={"username": taken, "password": kit.new_password()})
        expect_status(
            response, 409, f"The username {taken!r} is taken: registering it again should answer 409 Conflict."
        )


def test_register_invalid_is_422(kit: Any) -> None:
    """Register refuses with 422 usernames outside 3-32 of [a-z0-9_] and passwords outside 8-72 bytes"""
    good_name, good_password = kit.new_username(), kit.new_password()
    bad_bodies = [
        ({"username": "ab", "password": good_password}, "a username of 2 characters"),
        ({"username": "a" * 33, "password": good_password}, "a username of 33 characters"),
        ({"username": good_name.capitalize(), "password": good_password}, "a username with a capital letter"),
        ({"username": good_name + "-x", "password": good_password}, "a username with a hyphen"),
        ({"username": good_name[:3] + " " + good_name[3:], "password": good_password}, "a username with a space"),
        ({"username": good_name, "password": "short7!"}, "a password of 7 bytes"),
        ({"username": good_name, "password": "p" * 73}, "a password of 73 bytes"),
        ({"username": good_name, "password": "é" * 37}, "a password of 37 characters but 74 bytes"),
        ({"username": good_name}, "no password"),
    ]
    for body, why in bad_bodies:
        expect_status(
            kit.api.post("/auth/register", json=body),
            422,
            f"The registration was not refused: {why} must be refused with 422.",
        )
    for body in ({"username": "abc", "password": "é" * 36}, {"username": "a_" + "9" * 30, "password": "p" * 72}):
        expect_status(
            kit.api.post("/auth/register", json=body), 201, "A registration at the limits, but valid, was not created."
        )


def test_passwords_stored_as_bcrypt_hashes(kit: Any) -> None:
    """The store keeps a bcrypt hash of each password, never the password itself"""
    import bcrypt

    username, password = kit.register()
    # Why 128 characters: a password here has at most 16, a bcrypt hash 60.
    strings = kit.host.probe("store_strings", max_chars=128)
    expect(
        password not in strings,
        "The password itself is stored; store only its bcrypt hash (passlib's CryptContext).",
        expected="no copy of the password in the store",
        got=f"{password!r} found in the store",
    )
    hashes = [text for text in strings if text.startswith(("$2a$", "$2b$", "$2y$"))]

    def matches(text: str) -> bool:
        try:
            return bcrypt.checkpw(password.encode(), text.encode())
        except ValueError:
            return False

    expect(
        any(matches(text) for text in hashes),
        f"No bcrypt hash of {username}'s password was found in the store (get_db()'s value or module-level data).",
        expected='a hash like "$2b$12$..." made with CryptContext(schemes=["bcrypt"])',
        got=f"{len(hashes)} bcrypt hash(es), none matching the password",
    )


def test_login_bad_credentials_is_401(kit: Any) -> None:
    """A wrong password or an unknown username answers 401 with the header WWW-Authenticate: Bearer"""
    username, password = kit.register()
    for who, secret in (
        (username, password + "x"),
        (kit.admin_name, "not-" + kit.admin_password),
        (kit.new_username(), password),
    ):
        response = kit.login_response(who, secret)
        expect_status(response, 401, "Bad credentials must be refused with 401 Unauthorized.")
        header = response.headers.get("www-authenticate")
        expect(
            header == "Bearer",
            "The login's 401 lacks the header WWW-Authenticate: Bearer; add it.",
            sent=f"POST /auth/login with form username={who}",
            expected="WWW-Authenticate: Bearer",
            got=show(header),
        )


# --- tokens ---------------------------------------------------------------------------


def test_tokens_carry_sub_type_exp(kit: Any) -> None:
    """The access token holds sub, type "access" and exp in 15 minutes; the refresh token type "refresh" and 7 days"""
    account = kit.user()
    now = time.time()
    for token, kind, lifetime, label in (
        (account.access, "access", ACCESS_LIFETIME_S, "15 minutes"),
        (kit.refresh_token(account), "refresh", REFRESH_LIFETIME_S, "7 days"),
    ):
        claims = claims_of(token, f"{kind} token")
        wanted = {"sub": account.username, "type": kind}
        got = {key: claims.get(key) for key in wanted}
        expect(
            got == wanted,
            f"The {kind} token names another user in `sub` or another kind in `type` than expected.",
            expected=show(wanted),
            got=show(claims),
        )
        exp = claims.get("exp")
        expect(
            isinstance(exp, (int, float)) and abs(exp - (now + lifetime)) <= CLOCK_SLACK_S,
            f"The {kind} token's `exp` is not {label} after it was issued.",
            expected=f"about {int(now + lifetime)} (now + {label})",
            got=show(exp),
        )


def test_refresh_issues_access_token(kit: Any) -> None:
    """POST /auth/refresh with a refresh token answers 200 with a new, working access token"""
    account = kit.user()
    response = kit.api.post("/auth/refresh", json={"refresh_token": kit.refresh_token(account)})
    expect_status(response, 200, "A valid refresh token should get a new access token.")
    body = json_body(response)
    ok = isinstance(body, dict) and set(body) == {"access_token", "token_type"} and body.get("token_type") == "bearer"
    expect(
        ok and isinstance(body.get("access_token"), str),
        "POST /auth/refresh answered another body than the new access token and its type.",
        expected='{"access_token": "<jwt>", "token_type": "bearer"}',
        got=show(body),
    )
    claims = claims_of(body["access_token"], "refreshed access token")
    expect(
        claims.get("type") == "access" and claims.get("sub") == account.username,
        "The refreshed token is not an access token for the same user.",
        expected=show({"sub": account.username, "type": "access"}),
        got=show(claims),
    )
    expect_status(
        kit.api.get("/items", headers=kit.bearer(body["access_token"])),
        200,
        "The refreshed access token should open GET /items.",
    )


def test_refresh_refuses_access_token(kit: Any) -> None:
    """POST /auth/refresh refuses an access token with 401"""
    account = kit.user()
    response = kit.api.post("/auth/refresh", json={"refresh_token": account.access})
    expect_status(response, 401, "An access token is not a refresh token: /auth/refresh must refuse it with 401.")


def test_refresh_refuses_invalid_tokens(kit: Any) -> None:
    """POST /auth/refresh refuses a garbage, a tampered or a foreign-signed token with 401"""
    account = kit.user()
    refresh = kit.refresh_token(account)
    for token in ("not-a-jwt", tampered(refresh), forged_token(account.username, "refresh")):
        expect_status(
            kit.api.post("/auth/refresh", json={"refresh_token": token}),
            401,
            "An invalid refresh token must be refused with 401.",
        )


def test_expired_tokens_are_refused(kit: Any) -> None:
    """An access token 16 minutes old and a refresh token 8 days old are refused with 401"""
    account = kit.user()
    refresh = kit.refresh_token(account)
    how = " (The grader moves python-jose's clock ahead: decode tokens with jose.jwt.decode, which checks exp.)"
    with clock_moved_ahead(kit.host, 16 * 60):
        expect_status(
            kit.api.get("/items", headers=account.headers),
            401,
            "16 minutes later the access token has expired: GET /items must answer 401." + how,
        )
    with clock_moved_ahead(kit.host, 8 * 24 * 3600):
        expect_status(
            kit.api.post("/auth/refresh", json={"refresh_token": refresh}),
            401,
            "8 days later the refresh token has expired: /auth/refresh must answer 401." + how,
        )


def test_protected_routes_refuse_refresh_tokens(kit: Any) -> None:
    """A refresh token does not open /items or /admin: 401"""
    account, admin = kit.user(), kit.admin()
    expect_status(
        kit.api.get("/items", headers=kit.bearer(kit.refresh_token(account))),
        401,
        "A refresh token must not work as an access token: GET /items must answer 401.",
    )
    expect_status(
        kit.api.get("/admin/stats", headers=kit.bearer(kit.refresh_token(admin))),
        401,
        "The admin's refresh token must not work as an access token: GET /admin/stats must answer 401.",
    )


def test_items_need_a_valid_token(kit: Any) -> None:
    """GET /items without a token, with a garbage or with a foreign-signed token answers 401"""
    account = kit.user()
    expect_status(kit.api.get("/items"), 401, "GET /items without a token must answer 401.")
    for token in ("not-a-jwt", tampered(account.access), forged_token(account.username, "access")):
        expect_status(
            kit.api.get("/items", headers=kit.bearer(token)), 401, "An invalid token must be refused with 401."
        )


def test_deleted_users_tokens_are_refused(kit: Any) -> None:
    """Once the admin deletes a user, that user's access token and refresh token are refused with 401"""
    account, admin = kit.user(), kit.admin()
    expect_status(kit.api.get("/items", headers=account.headers), 200, "A fresh access token should open GET /items.")
    expect_status(
        kit.api.delete(f"/admin/users/{account.username}", headers=admin.headers),
        204,
        "The admin deleting a user should answer 204 No Content.",
    )
    expect_status(
        kit.api.get("/items", headers=account.headers),
        401,
        f"{account.username} was deleted: their access token must no longer open GET /items (401). "
        "get_current_user should look the user up in the store and refuse a name it does not find.",
    )
    expect_status(
        kit.api.post("/auth/refresh", json={"refresh_token": kit.refresh_token(account)}),
        401,
        f"{account.username} was deleted: their refresh token must no longer get an access token (401).",
    )


# --- items ----------------------------------------------------------------------------


def test_create_item_answers_201(kit: Any) -> None:
    """POST /items answers 201 with {id, name, description, price, owner}, the owner being the caller"""
    account = kit.user()
    item = kit.new_item()
    body = expect_created(
        kit.api.post("/items", json=item, headers=account.headers),
        "Creating an item should answer 201 Created.",
        no_id="The created item has no integer id; it must carry one.",
        expected='{"id": <int>, ...}',
    )
    expect_item(body, item, account.username, "The created item should echo what was sent, plus its id and owner.")


def test_create_item_invalid_is_422(kit: Any) -> None:
    """POST /items refuses with 422 an empty or 101-character name (padded, multi-byte), a negative or missing price"""
    account = kit.user()
    good = kit.new_item()
    for bad, why in (
        ({**good, "name": ""}, "an empty name"),
        ({**good, "name": "n" * 101}, "a name of 101 characters"),
        ({**good, "price": -0.01}, "a negative price"),
        ({**good, "price": "cheap"}, "a price that is not a number"),
        ({"name": good["name"], "description": None}, "no price"),
        (
            {**good, "name": " " + "n" * 100},
            "a name of 101 characters, the first a space (do not strip before measuring)",
        ),
        (
            {**good, "name": "n" * 100 + " "},
            "a name of 101 characters, the last a space (do not strip before measuring)",
        ),
        ({**good, "name": rng.choice(MULTI_BYTE) * 101}, "a name of 101 multi-byte characters"),
    ):
        expect_status(
            kit.api.post("/items", json=bad, headers=account.headers),
            422,
            f"The item was not refused: {why} must be refused with 422.",
        )
    edge = {**good, "name": "n" * 100, "price": 0}
    expect_status(
        kit.api.post("/items", json=edge, headers=account.headers),
        201,
        "A 100-character name and a price of 0 are valid.",
    )


def test_read_item_and_404(kit: Any) -> None:
    """GET /items/{id} answers the item, and 404 for an id that does not exist"""
    account = kit.user()
    created = kit.create_item(account)
    response = kit.api.get(f"/items/{created['id']}", headers=account.headers)
    expect_status(response, 200)
    expect_json(response, created, "GET /items/{id} should answer the item as it was created.")
    missing = created["id"] + rng.randrange(100, 1000)
    expect_status(kit.api.get(f"/items/{missing}", headers=account.headers), 404, "An unknown id should answer 404.")


def test_update_item_and_404(kit: Any) -> None:
    """PUT /items/{id} replaces name, description and price, keeps id and owner; 404 for an unknown id"""
    account = kit.user()
    created = kit.create_item(account)
    change = kit.new_item()
    response = kit.api.put(f"/items/{created['id']}", json=change, headers=account.headers)
    expect_status(response, 200, "The owner updating their item should get 200.")
    expected = {"id": created["id"], **change, "owner": account.username}
    expect_json(response, expected, "PUT should answer the updated item.")
    expect_json(
        kit.api.get(f"/items/{created['id']}", headers=account.headers),
        expected,
        "GET after PUT should show the update.",
    )
    missing = created["id"] + rng.randrange(100, 1000)
    expect_status(
        kit.api.put(f"/items/{missing}", json=change, headers=account.headers),
        404,
        "Updating an unknown id should answer 404.",
    )


def test_delete_item_and_404(kit: Any) -> None:
    """DELETE /items/{id} answers 204 with an empty body and removes the item; again, 404"""
    account = kit.user()
    created = kit.create_item(account)
    response = kit.api.delete(f"/items/{created['id']}", headers=account.headers)
    expect_status(response, 204, "The owner deleting their item should get 204 No Content.")
    expect(response.content == b"", "A 204 answer must have an empty body.", got=show(response.text))
    expect_status(
        kit.api.get(f"/items/{created['id']}", headers=account.headers),
        404,
        "The deleted item is still there: GET should answer 404.",
    )
    expect_status(
        kit.api.delete(f"/items/{created['id']}", headers=account.headers),
        404,
        "Deleting it a second time should answer 404.",
    )


def test_others_items_are_403(kit: Any) -> None:
    """Changing or deleting another user's item answers 403 and leaves it untouched"""
    owner, other = kit.user(), kit.user()
    created = kit.create_item(owner)
    expect_status(
        kit.api.put(f"/items/{created['id']}", json=kit.new_item(), headers=other.headers),
        403,
        f"{other.username} must not change {owner.username}'s item: 403 Forbidden.",
    )
    expect_status(
        kit.api.delete(f"/items/{created['id']}", headers=other.headers),
        403,
        f"{other.username} must not delete {owner.username}'s item: 403 Forbidden.",
    )
    expect_json(
        kit.api.get(f"/items/{created['id']}", headers=owner.headers),
        created,
        "A refused PUT or DELETE must leave the item as it was.",
    )


def test_admin_may_change_any_item(kit: Any) -> None:
    """The admin may update and delete any user's item"""
    owner, admin = kit.user(), kit.admin()
    created = kit.create_item(owner)
    change = kit.new_item()
    response = kit.api.put(f"/items/{created['id']}", json=change, headers=admin.headers)
    expect_status(response, 200, "The admin may update anyone's item.")
    expect_json(
        response,
        {"id": created["id"], **change, "owner": owner.username},
        "An update by the admin keeps the item's owner.",
    )
    expect_status(
        kit.api.delete(f"/items/{created['id']}", headers=admin.headers), 204, "The admin may delete anyone's item."
    )


def test_list_items_paginates_in_id_order(kit: Any) -> None:
    """GET /items lists items by id, 10 by default, with skip and limit"""
    account = kit.user()
    created = [kit.create_item(account) for _ in range(rng.randrange(11, 14))]
    created.sort(key=lambda item: item["id"])
    expect_json(
        kit.api.get("/items", headers=account.headers),
        created[:10],
        "Without parameters GET /items should list the first 10 items, ordered by id.",
    )
    skip, limit = rng.randrange(1, 6), rng.randrange(2, 6)
    expect_json(
        kit.api.get(f"/items?skip={skip}&limit={limit}", headers=account.headers),
        created[skip : skip + limit],
        f"skip={skip}&limit={limit} should skip {skip} items and list the next {limit}.",
    )
    expect_json(kit.api.get("/items?limit=100", headers=account.headers), created, "limit=100 should list every item.")
    expect_json(
        kit.api.get(f"/items?skip={len(created)}", headers=account.headers),
        [],
        "Skipping every item should list nothing.",
    )


def test_pagination_bounds_are_422(kit: Any) -> None:
    """GET /items answers 422 for skip < 0, limit < 1, limit > 100 or a non-number"""
    account = kit.user()
    for query in ("skip=-1", "limit=0", "limit=101", f"limit={rng.randrange(102, 10**6)}", "limit=ten", "skip=x"):
        expect_status(
            kit.api.get(f"/items?{query}", headers=account.headers),
            422,
            "Pagination out of bounds must be refused with 422.",
        )
    for query in ("skip=0&limit=1", "limit=100"):
        expect_status(kit.api.get(f"/items?{query}", headers=account.headers), 200, "These bounds are valid.")


# --- admin ----------------------------------------------------------------------------


def test_admin_stats_counts(kit: Any) -> None:
    """GET /admin/stats answers {"users": N, "items": M}, the admin included in N"""
    accounts = [kit.user() for _ in range(rng.randrange(1, 4))]
    count = 0
    for account in accounts:
        for _ in range(rng.randrange(1, 3)):
            kit.create_item(account)
            count += 1
    response = kit.api.get("/admin/stats", headers=kit.admin().headers)
    expect_status(response, 200)
    expect_json(
        response,
        {"users": len(accounts) + 1, "items": count},
        "The stats should count every user (the admin too) and every item.",
    )


def test_admin_routes_refuse_others(kit: Any) -> None:
    """The /admin routes answer 401 without a token and 403 to a user who is not admin"""
    account = kit.user()
    for method, path in (
        ("GET", "/admin/stats"),
        ("GET", "/admin/users"),
        ("DELETE", f"/admin/users/{account.username}"),
    ):
        expect_status(kit.api.request(method, path), 401, f"{method} {path} without a token must answer 401.")
        expect_status(
            kit.api.request(method, path, headers=account.headers),
            403,
            f"{method} {path} with a plain user's token must answer 403 Forbidden.",
        )


def test_admin_lists_users(kit: Any) -> None:
    """GET /admin/users lists every user as {username, role}"""
    names = [kit.register()[0] for _ in range(rng.randrange(2, 4))]
    response = kit.api.get("/admin/users", headers=kit.admin().headers)
    expect_status(response, 200)
    body = json_body(response)
    expected = sorted(
        [{"username": kit.admin_name, "role": "admin"}] + [{"username": n, "role": "user"} for n in names],
        key=lambda user: user["username"],
    )
    ok = isinstance(body, list) and all(isinstance(user, dict) for user in body)
    got = sorted(body, key=lambda user: str(user.get("username"))) if ok else body
    expect(
        got == expected,
        "GET /admin/users lists other users than every user as {username, role} (any order).",
        expected=show(expected),
        got=show(body),
    )


def test_admin_deletes_user(kit: Any) -> None:
    """DELETE /admin/users/{username} answers 204 and the user is gone; an unknown user answers 404"""
    account, admin = kit.user(), kit.admin()
    response = kit.api.delete(f"/admin/users/{account.username}", headers=admin.headers)
    expect_status(response, 204, "Deleting a user should answer 204 No Content.")
    expect(response.content == b"", "A 204 answer must have an empty body.", got=show(response.text))
    expect_status(
        kit.login_response(account.username, account.password),
        401,
        "A deleted user could still log in: the login must answer 401.",
    )
    expect_status(
        kit.api.delete(f"/admin/users/{account.username}", headers=admin.headers),
        404,
        "Deleting the same user again should answer 404.",
    )


def test_admin_cannot_delete_self(kit: Any) -> None:
    """The admin deleting their own account answers 400 and stays"""
    admin = kit.admin()
    expect_status(
        kit.api.delete(f"/admin/users/{kit.admin_name}", headers=admin.headers),
        400,
        "An admin must not delete themself: 400 Bad Request.",
    )
    kit.admin()
