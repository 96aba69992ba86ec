"""Grader for problem 2 — role-based access control with JWT.

Each check runs against a freshly imported app in an app host of its own (workbook/hostkit.py):
this process never imports the learner's module; it talks to the app over HTTP and observes
the module through the probes of probes.py, whose answers it judges here. The app hosts
hash with bcrypt's cost lowered to its minimum (the seed users are hashed at import time,
and a cost-12 hash takes a quarter of a second); the checks still verify that users_db
holds bcrypt hashes. Tokens are minted here, with the app's SECRET_KEY, so every attack is
built by hand: `alg: none`, a wrong key, a changed payload, an expired `exp`, missing
claims, odd roles. Every app host runs with the local time zone set to Asia/Kathmandu
(UTC+5:45), so an `exp` computed from naive local time (`datetime.now()`) is wrong on every
machine, not only on those whose clock is not set to UTC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from workbook.grading import (
    bearer,
    clip,
    describe_request,
    expect,
    expect_status,
    fail,
    json_body,
    rng,
    show,
)
from workbook.hostkit import AppHost, HostError, RemoteClient

USERS = {"alice": ("alice-secret", "admin"), "bob": ("bob-secret", "editor"), "carol": ("carol-secret", "viewer")}
BY_ROLE = {role: name for name, (_, role) in USERS.items()}
RANK = {"viewer": 1, "editor": 2, "admin": 3}
# Registered JWT claims (RFC 7519) create_access_token may add besides exp.
REGISTERED_EXTRAS = frozenset({"iat", "nbf", "jti", "iss"})
# Every endpoint of the contract, with the lowest role it admits.
ENDPOINTS = [("GET", "/admin/dashboard", "admin"), ("POST", "/posts", "editor"), ("GET", "/posts", "viewer")]
# A zone far from UTC with an odd offset: naive local time in `exp` shows as hours off.
LOCAL_ZONE = "Asia/Kathmandu"
# Characters of 2, 3 and 4 bytes in UTF-8: a limit of 200 characters is not one of 200 bytes.
MULTI_BYTE = ["é", "ß", "€", "中", "🙂", "𝄞"]
# bcrypt hashes at most 72 bytes; bcrypt 5 raises ValueError for more (statement: 401, never 500).
BCRYPT_MAX_BYTES = 72
WORDS = ["release", "notes", "roadmap", "retro", "launch", "budget", "hiring", "design", "incident", "review"]


@pytest.fixture
def host_setup() -> list[tuple[str, dict[str, Any]]]:
    # Before the import: a module-level datetime.now() must already read the odd zone.
    return [("set_time_zone", {"zone": LOCAL_ZONE})]


@pytest.fixture
def api(host: AppHost) -> Iterator[RemoteClient]:
    with host.client() as remote:
        yield remote


# --- tokens, built by hand ------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Each host's SECRET_KEY, asked once: an app may draw a new key at each import.
_keys: weakref.WeakKeyDictionary[AppHost, str] = weakref.WeakKeyDictionary()


def secret_key(host: AppHost) -> str:
    if host not in _keys:
        key = host.probe("secret_key")
        expect(
            key["json"] and isinstance(key["value"], str) and key["value"] != "",
            "app.py must define SECRET_KEY, a non-empty string.",
            got=key["shown"],
        )
        _keys[host] = key["value"]
    return _keys[host]


def sign(header: dict, claims: Any, key: str) -> str:
    signing_input = b64url_json(header) + "." + b64url_json(claims)
    digest = hmac.new(key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(digest)


def minted(host: AppHost, claims: Any, key: str | None = None) -> str:
    """An HS256 token over `claims`, signed with the app's SECRET_KEY (or `key`)."""
    return sign({"alg": "HS256", "typ": "JWT"}, claims, key if key is not None else secret_key(host))


def claims_for(name: str, role: Any = None, **extra: Any) -> dict[str, Any]:
    claims = {"sub": name, "role": role if role is not None else USERS[name][1], "exp": int(time.time()) + 600}
    claims.update(extra)
    return claims


def token_for_role(host: AppHost, role: str) -> str:
    return minted(host, claims_for(BY_ROLE[role]))


def new_post() -> dict[str, str]:
    title = " ".join(rng.sample(WORDS, 2)).capitalize() + f" #{rng.randrange(1000)}"
    return {"title": title, "body": f"{rng.choice(WORDS)} {rng.randrange(10**6)}"}


def call(api: RemoteClient, method: str, path: str, token: str | None) -> Any:
    headers = bearer(token) if token is not None else {}
    body = new_post() if method == "POST" else None
    return api.request(method, path, headers=headers, json=body)


# --- expectations ---------------------------------------------------------------------


def expect_401(response: Any, what: str) -> None:
    expect_status(response, 401, what)
    challenge = response.headers.get("www-authenticate", "")
    expect(
        challenge.lower().startswith("bearer"),
        "The 401 answer lacks WWW-Authenticate: Bearer, which tells the client how to authenticate: add it "
        '(HTTPException(..., headers={"WWW-Authenticate": "Bearer"})).',
        sent=describe_request(response.request),
        expected="the header WWW-Authenticate: Bearer",
        got=f"WWW-Authenticate: {challenge}" if challenge else "no WWW-Authenticate header",
    )


def expect_401_everywhere(api: RemoteClient, token: str | None, what: str) -> None:
    for method, path, _ in ENDPOINTS:
        expect_401(call(api, method, path, token), what)


def expect_403_everywhere(api: RemoteClient, token: str, what: str) -> None:
    for method, path, _ in ENDPOINTS:
        expect_status(call(api, method, path, token), 403, what)


# Stands for a value of the learner's that JSON cannot carry: equal to no expected value.
NOT_JSON = object()


def observed_users_db(host: AppHost) -> dict[str, Any]:
    """users_db as the host saw it (probes.users_db): its seeded records and its strings."""
    db = host.probe("users_db", names=sorted(USERS))
    expect(db["type"] == "dict", "app.py must define users_db, a dict keyed by username.", got=show(db["type"]))
    return db


def seeded_user(db: dict[str, Any], name: str) -> dict[str, Any]:
    """users_db[name]'s fields, each as the host observed it (probes.observed)."""
    record = db["records"].get(name)
    fields = record.get("fields") if isinstance(record, dict) else None
    expect(
        isinstance(fields, dict),
        f"users_db holds no record (a dict) for {name!r}.",
        expected=f'users_db[{name!r}] = {{"username": ..., "role": ..., "hashed_password": ...}}',
        got=record["shown"] if isinstance(record, dict) else show(None),
    )
    return fields


def value_of(fields: dict[str, Any], key: str) -> Any:
    """What record.get(key) was: None if absent, NOT_JSON if JSON could not carry it."""
    seen = fields.get(key)
    if seen is None:
        return None
    return seen["value"] if seen["json"] else NOT_JSON


def shown_field(fields: dict[str, Any], key: str) -> str:
    return fields[key]["shown"] if key in fields else show(None)


def login(api: RemoteClient, username: str, password: str) -> Any:
    return api.post("/token", data={"username": username, "password": password})


def login_token(api: RemoteClient, name: str) -> str:
    response = login(api, name, USERS[name][0])
    expect_status(response, 200, f"Logging in as {name} with the right password should answer 200.")
    body = json_body(response)
    token = body.get("access_token") if isinstance(body, dict) else None
    expect(
        isinstance(token, str) and token != "",
        'POST /token answered no access_token string; answer {"access_token": <str>, "token_type": "bearer"}.',
        got=show(body),
    )
    return token


def decoded(host: AppHost, token: str) -> dict:
    from jose import jwt

    key = secret_key(host)
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"verify_exp": False})
    except Exception as exc:  # noqa: BLE001 - whatever the learner's token makes python-jose raise
        fail(
            "The access token is not a JWT signed with SECRET_KEY using HS256.",
            expected='a token jwt.decode(token, SECRET_KEY, algorithms=["HS256"]) accepts',
            got=f"{type(exc).__name__}: {exc} for {show(token)}",
        )
    expect(isinstance(claims, dict), "The token's payload must be a JSON object.", got=show(claims))
    return claims


def add_routes(host: AppHost) -> dict[str, str]:
    """Routes the grader adds to the learner's app, one per role, each protected by
    require_role(role): {role: path}."""
    paths = {role: f"/grader/{role}-{rng.randrange(10**6)}" for role in RANK}
    seen = host.probe("protect_new_routes", paths=paths)
    for role in paths:
        returned = seen.get(role) or {"callable": False, "repr": "nothing"}
        expect(
            returned["callable"] is True,
            f"require_role({role!r}) returned no function to use with Depends (is `return dependency` missing?).",
            expected="a function to use as Depends(require_role(role))",
            got=f"it returned {clip(str(returned['repr']))}",
        )
    return paths


def a_or_an(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


# --- users_db and passwords -----------------------------------------------------------


def test_users_are_seeded_with_roles(host: AppHost) -> None:
    """users_db holds alice (admin), bob (editor) and carol (viewer), keyed by username"""
    db = observed_users_db(host)
    for name, (_, role) in USERS.items():
        record = seeded_user(db, name)
        got = {"username": value_of(record, "username"), "role": value_of(record, "role")}
        shown = ", ".join(f'"{key}": {record[key]["shown"]}' for key in ("username", "role") if key in record)
        expect(
            got == {"username": name, "role": role},
            f"users_db[{name!r}] {seeded_difference(record, name, role)}.",
            expected=show({"username": name, "role": role}),
            got=clip("{" + shown + "}"),
        )


def seeded_difference(record: dict[str, Any], name: str, role: str) -> str:
    """What is wrong with a seeded user's record, in words: a missing key is not "null"."""
    if "role" not in record:
        return f'has no "role" key, expected "role": {show(role)}'
    if value_of(record, "role") != role:
        return f'has "role": {shown_field(record, "role")}, expected {show(role)}'
    if "username" not in record:
        return f'has no "username" key, expected "username": {show(name)}'
    return f'has "username": {shown_field(record, "username")}, expected {show(name)}'


def test_passwords_are_bcrypt_hashes(host: AppHost) -> None:
    """users_db stores a bcrypt hash of each password that pwd_context verifies"""
    context = host.probe("pwd_context")
    expect(
        context["usable"] is True,
        'pwd_context is missing or not a CryptContext: define pwd_context = CryptContext(schemes=["bcrypt"], ...).',
        got=show(context["repr"]),
    )
    db = observed_users_db(host)
    for name, (password, _) in USERS.items():
        record = seeded_user(db, name)
        hashed = value_of(record, "hashed_password")
        expect(
            isinstance(hashed, str) and hashed.startswith(("$2a$", "$2b$", "$2y$")),
            f'users_db[{name!r}]["hashed_password"] is not a bcrypt hash (one starts with $2b$).',
            expected="pwd_context.hash(password)",
            got=shown_field(record, "hashed_password"),
        )
        expect(
            verified(host, password, hashed) is True,
            f"pwd_context.verify refused {name}'s right password.",
            expected=f'pwd_context.verify({password!r}, users_db[{name!r}]["hashed_password"]) is True',
            got="False",
        )
        expect(
            verified(host, password + "!", hashed) is False,
            f"{name}'s hash accepted a wrong password; it must refuse it.",
            got="pwd_context.verify accepted a wrong password",
        )


def verified(host: AppHost, password: str, hashed: str) -> Any:
    """What pwd_context.verify(password, hashed) returned in the host (NOT_JSON if no JSON value)."""
    seen = host.probe("verify_password", password=password, hashed=hashed)
    return seen["value"] if seen["json"] else NOT_JSON


def test_no_plaintext_passwords_stored(host: AppHost) -> None:
    """No record in users_db contains a plaintext password"""
    stored = observed_users_db(host)["strings"]
    leaked = sorted({password for password, _ in USERS.values() if any(password in text for text in stored)})
    expect(
        leaked == [],
        "users_db holds plaintext passwords; keep only their hashes: anyone who reads it would learn them.",
        expected="no plaintext password anywhere in users_db",
        got=f"found {show(leaked)}",
    )


# --- logging in -----------------------------------------------------------------------


def test_login_returns_bearer_token(api: RemoteClient) -> None:
    """POST /token with a right username and password answers 200 with an access_token of type bearer"""
    name = rng.choice(sorted(USERS))
    response = login(api, name, USERS[name][0])
    expect_status(response, 200, f"Logging in as {name} with the right password should answer 200.")
    body = json_body(response)
    expect(
        isinstance(body, dict) and isinstance(body.get("access_token"), str) and body.get("token_type") == "bearer",
        "POST /token answered another body than the token and its type.",
        expected='{"access_token": <str>, "token_type": "bearer"}',
        got=show(body),
    )


def test_token_carries_sub_role_exp(host: AppHost, api: RemoteClient) -> None:
    """The token from POST /token is signed with SECRET_KEY (HS256) and carries sub, role and exp 30 minutes ahead"""
    name = rng.choice(sorted(USERS))
    token = login_token(api, name)
    try:
        header = json.loads(unb64url(token.split(".")[0]))
    except ValueError:
        header = None
    expect(
        isinstance(header, dict) and header.get("alg") == "HS256",
        "The token's header names another algorithm than HS256.",
        expected='a header {"alg": "HS256", ...}',
        got=show(header),
    )
    claims = decoded(host, token)
    got = {"sub": claims.get("sub"), "role": claims.get("role")}
    expect(
        got == {"sub": name, "role": USERS[name][1]},
        f"The token for {name} carries another sub or role than the user's.",
        expected=show({"sub": name, "role": USERS[name][1]}),
        got=show(claims),
    )
    exp = claims.get("exp")
    ahead = exp - time.time() if isinstance(exp, (int, float)) else None
    expect(
        ahead is not None and abs(ahead - 30 * 60) <= 60,
        "The token has no exp claim; set exp 30 minutes ahead in create_access_token."
        if exp is None
        else "The token's exp does not lie 30 minutes ahead.",
        expected="exp = now + 30 minutes (a number of seconds since 1970)",
        got=exp_text(exp, ahead),
    )


def exp_text(exp: Any, ahead: float | None) -> str:
    """A token's exp claim in words: missing, not a number, or how far ahead it lies."""
    if exp is None:
        return "no exp claim in the token"
    return f"exp {show(exp)}, not a number of seconds" if ahead is None else f"exp {ahead / 60:.1f} minutes ahead"


def test_wrong_password_is_401(api: RemoteClient) -> None:
    """POST /token with a wrong password is refused with 401 and WWW-Authenticate: Bearer"""
    name = rng.choice(sorted(USERS))
    wrong = rng.choice([USERS[name][0] + "x", USERS[name][0].upper(), "password"])
    expect_401(login(api, name, wrong), "A wrong password must be refused with 401 Unauthorized.")


def test_overlong_password_is_401(host: AppHost) -> None:
    """POST /token answers 401, never 500, to a password over 72 bytes (multi-byte too), for a user or not"""
    name = rng.choice(sorted(USERS))
    right = USERS[name][0]
    wide = rng.choice(MULTI_BYTE[:2])  # two bytes each: 37 of them are 74 bytes
    attempts = [
        (name, right + "x" * (BCRYPT_MAX_BYTES + 1 - len(right)), "73 bytes that start with the right password"),
        (name, wide * 37, f"37 characters {wide!r}, 74 bytes"),
        (name, "p" * rng.randrange(100, 400), "a long ASCII password"),
        (f"nobody{rng.randrange(100)}", wide * 40, "an unknown user with an 80-byte password"),
    ]
    # Why not raise: a crash in the learner's login must show as the status the client sees.
    with host.client(raise_server_exceptions=False) as api:
        for username, password, why in attempts:
            expect_401(
                login(api, username, password),
                f"A password over 72 bytes was not refused with 401 ({why}): it cannot match any stored hash "
                "(bcrypt's limit), and bcrypt 5 raises ValueError for it, so refuse it before verifying.",
            )


def test_unknown_user_is_401(api: RemoteClient) -> None:
    """POST /token for a username that does not exist is refused with 401 and WWW-Authenticate: Bearer"""
    name = rng.choice(["mallory", "trent", "eve", "oscar"]) + str(rng.randrange(100))
    expect_401(login(api, name, "alice-secret"), "An unknown username must be refused with 401 Unauthorized.")


def test_create_access_token_expiry(host: AppHost) -> None:
    """create_access_token(data) keeps the claims and sets exp 30 minutes ahead, or expires_delta ahead when given"""
    claims = {"sub": "bob", "role": "editor", "x-nonce": rng.randrange(10**6)}
    minutes = rng.randrange(2, 20)
    for delta, wanted in ((None, 30), (minutes, minutes)):
        seen = host.probe("create_access_token", claims=claims, minutes=delta)
        token = seen["token"]["value"] if seen["token"]["json"] else NOT_JSON
        expect(
            isinstance(token, str),
            "create_access_token must return the encoded token as a str.",
            got=seen["token"]["shown"],
        )
        expect(
            seen["given"]["json"] and seen["given"]["value"] == claims,
            "create_access_token changed the dict it was given; copy it first.",
            expected=show(claims),
            got=seen["given"]["shown"],
        )
        got = decoded(host, token)
        exp = got.get("exp")
        kept = {name: got.get(name) for name in claims}
        extra = sorted(set(got) - set(claims) - {"exp"} - REGISTERED_EXTRAS)
        expect(
            kept == claims and extra == [],
            "The token carries other claims than those it was given, unchanged, plus exp "
            f"(and at most registered claims such as {', '.join(sorted(REGISTERED_EXTRAS))}).",
            expected=show({**claims, "exp": "..."}),
            got=show(got),
        )
        ahead = exp - time.time() if isinstance(exp, (int, float)) else None
        call_text = (
            "create_access_token(data)" if delta is None else f"create_access_token(data, timedelta(minutes={minutes}))"
        )
        expect(
            ahead is not None and abs(ahead - wanted * 60) <= 60,
            f"{call_text} set no exp, expected exp {wanted} minutes ahead."
            if exp is None
            else f"{call_text} did not set exp {wanted} minutes ahead.",
            expected=f"exp = now + {wanted} minutes",
            got=exp_text(exp, ahead),
        )


def test_login_tokens_open_the_right_endpoints(api: RemoteClient) -> None:
    """Logging in as alice, bob and carol gives tokens that open exactly the endpoints of their roles"""
    for name, (_, role) in USERS.items():
        token = login_token(api, name)
        for method, path, lowest in ENDPOINTS:
            admitted = RANK[role] >= RANK[lowest]
            wanted = (201 if method == "POST" else 200) if admitted else 403
            expect_status(
                call(api, method, path, token),
                wanted,
                f"{name} ({role}) logged in through POST /token and must be let into {method} {path} "
                f"(it needs {lowest} or higher)."
                if admitted
                else f"{name} ({role}) logged in through POST /token and must be refused {method} {path} "
                f"with 403 (it needs {lowest} or higher).",
            )


# --- the role x endpoint matrix -------------------------------------------------------


def test_dashboard_admits_admin(host: AppHost, api: RemoteClient) -> None:
    """GET /admin/dashboard answers 200 with a JSON object for an admin"""
    response = api.get("/admin/dashboard", headers=bearer(token_for_role(host, "admin")))
    expect_status(response, 200, "An admin's token must open the dashboard.")
    body = json_body(response)
    expect(isinstance(body, dict), "The dashboard should answer with a JSON object.", expected="{...}", got=show(body))


def test_dashboard_refuses_editor_and_viewer(host: AppHost, api: RemoteClient) -> None:
    """GET /admin/dashboard answers 403 (not 401) for an editor and for a viewer"""
    for role in ("editor", "viewer"):
        response = api.get("/admin/dashboard", headers=bearer(token_for_role(host, role)))
        expect_status(response, 403, f"A valid {role} token is known but not allowed here: 403 Forbidden.")


def test_create_post_admits_editor_and_admin(host: AppHost, api: RemoteClient) -> None:
    """POST /posts answers 201 with {id, title, body, author} for an editor and for an admin"""
    for role in ("editor", "admin"):
        post = new_post()
        response = api.post("/posts", json=post, headers=bearer(token_for_role(host, role)))
        expect_status(
            response, 201, f"{a_or_an(role).capitalize()} may create posts; a created post answers 201 Created."
        )
        body = json_body(response)
        expect(
            isinstance(body, dict) and "id" in body,
            "The created post has no id; it must carry one.",
            expected='{"id": ..., "title": ..., "body": ..., "author": ...}',
            got=show(body),
        )
        wanted = {"id": body["id"], **post, "author": BY_ROLE[role]}
        expect(
            body == wanted,
            "POST /posts answered another post than the one sent, with author = the token's sub.",
            expected=show(wanted),
            got=show(body),
        )


def test_create_post_refuses_viewer(host: AppHost, api: RemoteClient) -> None:
    """POST /posts answers 403 for a viewer and creates nothing"""
    viewer = bearer(token_for_role(host, "viewer"))
    expect_status(
        api.post("/posts", json=new_post(), headers=viewer), 403, "A viewer may read posts but not write them."
    )
    response = api.get("/posts", headers=viewer)
    expect_status(response, 200)
    body = json_body(response)
    expect(body == [], "A refused POST /posts must not store the post.", expected="[]", got=show(body))


def test_list_posts_admits_every_role(host: AppHost, api: RemoteClient) -> None:
    """GET /posts answers 200 with a list for a viewer, an editor and an admin"""
    for role in ("viewer", "editor", "admin"):
        response = api.get("/posts", headers=bearer(token_for_role(host, role)))
        expect_status(response, 200, f"Every authenticated user may list posts, {a_or_an(role)} too.")
        body = json_body(response)
        expect(isinstance(body, list), "GET /posts should answer a JSON list.", expected="[...]", got=show(body))


def test_posts_listed_in_creation_order(host: AppHost, api: RemoteClient) -> None:
    """GET /posts lists every created post, in creation order"""
    created = []
    for index in range(rng.randrange(3, 6)):
        role = rng.choice(["editor", "admin"])
        post = new_post()
        if index == 1:
            post["title"] = ("Long title " * 20)[:200]
        response = api.post("/posts", json=post, headers=bearer(token_for_role(host, role)))
        expect_status(
            response,
            201,
            f"POST /posts by {a_or_an(role)} with a valid post (a title of {len(post['title'])} characters) "
            "should answer 201 Created.",
        )
        body = json_body(response)
        expect(
            isinstance(body, dict) and "id" in body,
            "POST /posts answered no post with an id; it must answer the created post.",
            sent=describe_request(response.request),
            expected='{"id": ..., "title": ..., "body": ..., "author": ...}',
            got=show(body),
        )
        created.append(body)
    ids = [post["id"] for post in created]
    expect(
        len({json.dumps(i) for i in ids}) == len(ids),
        "Two posts got the same id; each post must get an id of its own.",
        expected="a different id for each post",
        got=f"the ids {show(ids)}",
    )
    response = api.get("/posts", headers=bearer(token_for_role(host, "viewer")))
    expect_status(response, 200)
    body = json_body(response)
    expect(
        body == created,
        "GET /posts lists other posts, or another order, than the posts as created, oldest first.",
        expected=show(created),
        got=show(body),
    )


def test_post_author_comes_from_token(host: AppHost, api: RemoteClient) -> None:
    """The author of a post is the token's sub, whatever the request body says"""
    post = {**new_post(), "author": "mallory"}
    response = api.post("/posts", json=post, headers=bearer(token_for_role(host, "editor")))
    expect_status(response, 201)
    body = json_body(response)
    got = body.get("author") if isinstance(body, dict) else body
    expect(
        got == "bob",
        "The author is not the token's sub; it must come from the token, never from the request body.",
        expected='"author": "bob"',
        got=show(got),
    )


def test_create_post_rejects_bad_body(host: AppHost, api: RemoteClient) -> None:
    """POST /posts answers 422 if title is empty, over 200 characters or missing, or body is missing or not a string"""
    good = new_post()
    editor = bearer(token_for_role(host, "editor"))
    wide = rng.choice(MULTI_BYTE)
    for bad, why in (
        ({**good, "title": ""}, "an empty title"),
        ({**good, "title": "x" * 201}, "a title of 201 characters"),
        ({**good, "title": " " + "x" * 200}, "a title of 201 characters, the first a space (do not strip)"),
        ({**good, "title": "x" * 200 + " "}, "a title of 201 characters, the last a space (do not strip)"),
        ({**good, "title": wide * 201}, f"a title of 201 characters {wide!r}"),
        ({"body": good["body"]}, "no title"),
        ({"title": good["title"]}, "no body"),
        ({**good, "body": 5}, "a body that is not a string"),
    ):
        expect_status(
            api.post("/posts", json=bad, headers=editor),
            422,
            f"The post was not refused: {why} must be refused with 422 (title: a required string of 1 to 200 "
            "characters; body: a required string).",
        )


def test_create_post_accepts_every_valid_title(host: AppHost, api: RemoteClient) -> None:
    """POST /posts stores titles of 1 to 200 characters as sent: multi-byte, padded, with tabs; bodies may be empty"""
    editor = bearer(token_for_role(host, "editor"))
    wide = rng.choice(MULTI_BYTE)
    for post, why in (
        ({"title": wide * 200, "body": new_post()["body"]}, f"200 characters {wide!r} are 200 characters"),
        ({"title": "  " + new_post()["title"] + " ", "body": "kept"}, "spaces around a title are part of it"),
        ({"title": rng.choice("xyz"), "body": ""}, "a title of one character and an empty body"),
        ({"title": "tab\there", "body": "line one\nline two"}, "a tab and a newline are characters too"),
    ):
        response = api.post("/posts", json=post, headers=editor)
        expect_status(response, 201, f"A valid post was not created ({why}): it must be created with 201.")
        body = json_body(response)
        got = {"title": body.get("title"), "body": body.get("body")} if isinstance(body, dict) else body
        expect(
            got == post,
            f"The post was created, but not as sent ({why}): store and answer title and body unchanged.",
            sent=describe_request(response.request),
            expected=show(post),
            got=show(body),
        )


# --- 401: who are you? ----------------------------------------------------------------


def test_no_token_is_401(api: RemoteClient) -> None:
    """A request without an Authorization header is refused with 401 and WWW-Authenticate: Bearer"""
    expect_401_everywhere(api, None, "Without a token the caller is unknown: 401 Unauthorized.")


def test_malformed_token_is_401(api: RemoteClient) -> None:
    """A token that is not a JWT at all is rejected with 401"""
    token = rng.choice(["not-a-jwt", "abc.def", "x.y.z", "Zm9v.YmFy.YmF6"]) + str(rng.randrange(100))
    expect_401_everywhere(api, token, "A token that cannot be decoded must be rejected with 401, never 500.")


def test_bad_signature_is_401(host: AppHost, api: RemoteClient) -> None:
    """A token signed with another secret key is rejected with 401"""
    token = minted(host, claims_for("alice"), key=secret_key(host) + f"-forged-{rng.randrange(10**6)}")
    expect_401_everywhere(api, token, "A token whose signature does not match SECRET_KEY must be rejected with 401.")


def test_tampered_payload_is_401(host: AppHost, api: RemoteClient) -> None:
    """A viewer's token whose payload was changed to role admin after signing is rejected with 401"""
    header, _, signature = minted(host, claims_for("carol")).split(".")
    forged = ".".join([header, b64url_json(claims_for("carol", role="admin")), signature])
    expect_401_everywhere(api, forged, "The signature covers the payload: a changed payload must be rejected with 401.")


def test_alg_none_is_401(api: RemoteClient) -> None:
    """A token signed with `alg: none` (no signature at all) is rejected with 401"""
    token = b64url_json({"alg": "none", "typ": "JWT"}) + "." + b64url_json(claims_for("alice")) + "."
    expect_401_everywhere(
        api,
        token,
        "A token with alg none carries no signature; anyone can write one. "
        "Decode with algorithms=[ALGORITHM] and reject it with 401.",
    )


def test_expired_token_is_401(host: AppHost, api: RemoteClient) -> None:
    """A token whose exp has passed is rejected with 401"""
    # Hours in the past, not seconds: a few minutes of clock-skew leeway is a fair choice.
    token = minted(host, claims_for("alice", exp=int(time.time()) - rng.randrange(3600, 86400)))
    expect_401_everywhere(api, token, "An expired token must be rejected with 401.")


def test_token_without_sub_is_401(host: AppHost, api: RemoteClient) -> None:
    """A correctly signed token without `sub` is rejected with 401"""
    claims = claims_for("alice")
    del claims["sub"]
    expect_401_everywhere(api, minted(host, claims), "A token that names no user (no sub) must be rejected with 401.")


def test_token_without_role_is_401(host: AppHost, api: RemoteClient) -> None:
    """A correctly signed token without `role` is rejected with 401"""
    claims = claims_for(rng.choice(sorted(USERS)))
    del claims["role"]
    expect_401_everywhere(
        api, minted(host, claims), "A token without a role claim must be rejected with 401, never 500."
    )


def test_unknown_sub_is_401(host: AppHost, api: RemoteClient) -> None:
    """A correctly signed token for a user who is not in users_db is rejected with 401"""
    name = rng.choice(["mallory", "trent", "eve", "oscar"]) + str(rng.randrange(100))
    token = minted(host, claims_for("alice") | {"sub": name})
    expect_401_everywhere(api, token, f"{name!r} is not in users_db, so the token names nobody: 401.")


# --- 403: the role is not good enough -------------------------------------------------

# The forged-role tokens below name alice, an admin in users_db: code that looks the role up
# there instead of reading the token admits them whatever its comparison does.
ROLE_FROM_TOKEN = (
    " (The token's sub is alice, an admin in users_db: if your comparison is right already, read the role "
    "from the token's payload, not from users_db.)"
)


def test_role_administrator_is_403(host: AppHost, api: RemoteClient) -> None:
    """A token with role "administrator" is refused with 403: a role that merely contains "admin" is not admin"""
    token = minted(host, claims_for("alice", role="administrator"))
    expect_403_everywhere(
        api,
        token,
        'The role "administrator" in the token is not one of viewer, editor, admin: 403 Forbidden. '
        "Compare whole role names, never substrings." + ROLE_FROM_TOKEN,
    )


def test_role_list_is_403(host: AppHost, api: RemoteClient) -> None:
    """A token with role ["admin"] (a list, not a string) is refused with 403"""
    token = minted(host, claims_for("alice", role=["admin"]))
    expect_403_everywhere(
        api,
        token,
        "A role must be one of the strings viewer, editor, admin; a list is not: 403 Forbidden, never 500."
        + ROLE_FROM_TOKEN,
    )


def test_role_padded_uppercase_is_403(host: AppHost, api: RemoteClient) -> None:
    """Tokens with role "ADMIN ", "Admin" or " admin" (other case, padding) are refused with 403"""
    for role in ("ADMIN ", "Admin", " admin"):
        expect_403_everywhere(
            api,
            minted(host, claims_for("alice", role=role)),
            f"Role names are exact: {show(role)} is not admin. Do not strip or lowercase what the token says: "
            "403 Forbidden." + ROLE_FROM_TOKEN,
        )


def test_role_comes_from_token(host: AppHost, api: RemoteClient) -> None:
    """A correctly signed token for carol with role admin opens the dashboard: the role comes from the token"""
    response = api.get("/admin/dashboard", headers=bearer(minted(host, claims_for("carol", role="admin"))))
    expect_status(response, 200, "The role must be read from the token's payload, not looked up in users_db.")


# --- require_role on routes the grader adds -------------------------------------------


def test_require_role_hierarchy_on_new_routes(host: AppHost) -> None:
    """require_role(r) protects a route the grader adds: it admits role r and every role above it, 403 below"""
    paths = add_routes(host)
    with host.client() as api:
        check_hierarchy(host, api, paths)


def check_hierarchy(host: AppHost, api: RemoteClient, paths: dict[str, str]) -> None:
    for required, path in paths.items():
        expect_401(api.get(path), f"A route declared with Depends(require_role({required!r})) needs a token: 401.")
        for role in rng.sample(sorted(RANK), len(RANK)):
            admitted = RANK[role] >= RANK[required]
            expect_status(
                api.get(path, headers=bearer(token_for_role(host, role))),
                200 if admitted else 403,
                f"require_role({required!r}) refused {a_or_an(role)}, who ranks at or above {required} "
                "(viewer < editor < admin): it must admit them."
                if admitted
                else f"require_role({required!r}) did not refuse {a_or_an(role)}, who ranks below {required} "
                "(viewer < editor < admin): it must answer 403.",
            )


def test_require_role_rejects_unknown_role(host: AppHost) -> None:
    """require_role("superuser") raises ValueError at once, before any request"""
    role = rng.choice(["superuser", "root", "owner", "moderator"])
    try:
        host.probe("require_role", role=role)
    except HostError:
        raise  # the host itself failed: not the learner's exception
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - any other exception is the learner's, shown as such
        fail(
            f"require_role({role!r}) raised another exception than ValueError.",
            expected="ValueError",
            got=f"{type(exc).__name__}: {exc}",
        )
    fail(
        f"require_role({role!r}) raised nothing; it must raise ValueError right away: a misspelt role would "
        "otherwise lock a route for everybody (or nobody).",
        expected="ValueError",
        got="it returned normally",
    )
