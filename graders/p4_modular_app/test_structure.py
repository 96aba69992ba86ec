"""Grader for problem 4, second half: the structure of the package.

Read only through public APIs that survive FastAPI's changes: each router module's `router`
(its routes, prefix, tags, dependencies), the routes the app serves as listed by
`fastapi.routing.iter_route_contexts` (or `app.routes` on older FastAPI, which flattened
included routers), the OpenAPI schema, and `app.dependency_overrides`. Prefixes, tags and
router-level dependencies may be declared on the APIRouter or at include_router: both count.
All of it is observed in the app host (probes.structure, probes.openapi) and judged here; the
overrides are set there too (probes.override).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workbook.grading import expect, expect_status, fail, show

ROUTERS = {
    "auth": ("/auth", [("POST", "/auth/register"), ("POST", "/auth/login"), ("POST", "/auth/refresh")]),
    "items": (
        "/items",
        [("GET", "/items"), ("POST", "/items"), ("GET", "/items/{}"), ("PUT", "/items/{}"), ("DELETE", "/items/{}")],
    ),
    "admin": ("/admin", [("GET", "/admin/stats"), ("GET", "/admin/users"), ("DELETE", "/admin/users/{}")]),
}
GUARDS = {"items": "get_current_user", "admin": "get_current_admin"}
DEPENDENCY_NAMES = ("get_db", "get_current_user", "get_current_admin", "pagination")
TEAPOT = 418


@dataclass
class Served:
    """One (method, path) the app or a router serves, as probes.structure describes it: the
    endpoint is {"id", "name", "module"} (or None), each dependency {"id", "call"}."""

    method: str
    path: str
    endpoint: Any
    tags: list
    dependencies: list

    @property
    def shape(self) -> tuple[str, str]:
        return self.method, normalize(self.path)


def normalize(path: str) -> str:
    """/items/{item_id}/ and /items/{id} are the same route for the contract."""
    path = re.sub(r"\{[^}]*\}", "{}", path)
    return path.rstrip("/") or "/"


def served_by(routes: list) -> list[Served]:
    return [
        Served(route["method"], route["path"], route["endpoint"], route["tags"], route["dependencies"])
        for route in routes
    ]


def same(one: Any, other: Any) -> bool:
    """Whether two described objects are the same object in the app host (None is None)."""
    return (one or {}).get("id") == (other or {}).get("id")


def name_of(described: Any) -> str:
    return str(described["name"]) if isinstance(described, dict) else "None"


def package(host: Any) -> dict[str, Any]:
    """The package's structure, observed in the app host (probes.structure)."""
    return host.probe("structure")


def cannot_import(name: str, error: str) -> None:
    fail(
        f"The module {name} cannot be imported.",
        expected=f"app/{name.split('.', 1)[1].replace('.', '/')}.py",
        got=error,
    )


def dependencies_of(found: dict[str, Any]) -> dict[str, Any]:
    """{name: the callable of that name in app.dependencies, or None}."""
    module = found["dependencies"]
    if module["error"] is not None:
        cannot_import("app.dependencies", module["error"])
    return module["callables"]


def router_of(found: dict[str, Any], name: str) -> dict[str, Any]:
    router = found["routers"][name]
    if router["error"] is not None:
        cannot_import(f"app.routers.{name}", router["error"])
    expect(
        router["is_router"],
        f"app/routers/{name}.py exposes no `router` that is an APIRouter.",
        expected=f"router = APIRouter(...) in app/routers/{name}.py",
        got=show(router["type"]),
    )
    return router


def mounted(found: dict[str, Any], name: str) -> list[tuple[tuple[str, str], Served, Served]]:
    """For each contract route of router `name`: (its shape, how the app serves it, how the router declares it)."""
    router = router_of(found, name)
    own = served_by(router["routes"])
    app_routes = served_by(found["app_routes"])
    pairs = []
    for shape in ROUTERS[name][1]:
        in_app = [served for served in app_routes if served.shape == shape]
        expect(
            bool(in_app),
            f"The app serves no {shape[0]} {shape[1].replace('{}', '{id}')}.",
            expected=f"that route, defined in app/routers/{name}.py",
            got="no such route",
        )
        served = in_app[0]
        declared = [route for route in own if same(route.endpoint, served.endpoint) and route.method == served.method]
        if not declared:
            origin = (served.endpoint or {}).get("module", "?")
            fail(
                f"{shape[0]} {served.path} must be defined on the router in app/routers/{name}.py.",
                expected=f"@router.{shape[0].lower()}(...) in app/routers/{name}.py",
                got=f"the endpoint {(served.endpoint or {}).get('name', '?')} is defined in {origin}, not on it",
            )
        pairs.append((shape, served, declared[0]))
    return pairs


def router_level(router: dict[str, Any], served: Served, declared: Served) -> list:
    """The dependencies that apply to the whole router: on the APIRouter, or at include_router."""
    from_include = [dep for dep in served.dependencies if not any(same(dep, mine) for mine in declared.dependencies)]
    return list(router["dependencies"]) + from_include


def override(host: Any, replace: dict[str, str]) -> None:
    """Set app.dependency_overrides in the app host (probes.override): each dependency of
    app.dependencies named in `replace` by "teapot" (answers 418), "spy" or "caught"."""
    error = host.probe("override", replace=replace)
    if error is not None:
        cannot_import("app.dependencies", error)


# --- the modules ----------------------------------------------------------------------


def test_modules_expose_router_and_dependencies(observing_host: Any) -> None:
    """app/routers/{auth,items,admin}.py each expose `router`; app/dependencies.py defines the four dependencies"""
    found = package(observing_host)
    for name in ROUTERS:
        router_of(found, name)
    dependencies = dependencies_of(found)
    missing = [name for name in DEPENDENCY_NAMES if dependencies.get(name) is None]
    expect(
        not missing,
        "app/dependencies.py lacks some of get_db, get_current_user, get_current_admin and pagination.",
        expected=", ".join(DEPENDENCY_NAMES),
        got="missing: " + ", ".join(missing),
    )


def test_routes_live_in_their_routers(observing_host: Any) -> None:
    """Every /auth, /items and /admin route is defined on the router of its module, not on app"""
    found = package(observing_host)
    for name in ROUTERS:
        mounted(found, name)


def test_main_defines_only_root(observing_host: Any) -> None:
    """main.py defines no endpoint function, on `app` or on a router, except, optionally, GET /"""
    found = package(observing_host)
    from_routers = {
        (route.endpoint or {}).get("id") for name in ROUTERS for route in served_by(router_of(found, name)["routes"])
    }
    builtin = set(found["builtin_paths"])
    extra, in_main = [], []
    for served in served_by(found["app_routes"]):
        if served.path in builtin or served.shape == ("GET", "/"):
            continue
        if (served.endpoint or {}).get("id") not in from_routers:
            extra.append(f"{served.method} {served.path}")
        elif (served.endpoint or {}).get("module") == found["main"]:
            in_main.append(served)
    expect(
        not extra,
        "Every feature route belongs in a router module; main.py only includes the routers.",
        expected="no route on app except GET /",
        got="defined on app: " + ", ".join(extra),
    )
    if in_main:
        served = in_main[0]
        feature = served.path.strip("/").split("/")[0]
        home = f"app/routers/{feature}.py" if feature in ROUTERS else "its router's module in app/routers/"
        fail(
            f"{served.method} {served.path} is served by a router, but its function is written in main.py: "
            f"move the function into {home}, decorated with @router.{served.method.lower()}(...) there.",
            expected="no endpoint function in main.py except GET /",
            got="endpoint functions in main.py: "
            + ", ".join(f"{(s.endpoint or {}).get('name', '?')} ({s.method} {s.path})" for s in in_main),
        )


def test_each_route_served_once(observing_host: Any) -> None:
    """Each router is included once: no method and path is served twice"""
    counts = Counter((served.method, served.path) for served in served_by(package(observing_host)["app_routes"]))
    twice = [f"{method} {path} ({count} times)" for (method, path), count in counts.items() if count > 1]
    expect(
        not twice,
        "The app serves the same route more than once: include each router once in main.py "
        "(app.include_router(items.router) a single time) and define each route once.",
        expected="every method and path served once",
        got="served more than once: " + ", ".join(twice),
    )


def test_router_prefixes_declared_once(observing_host: Any) -> None:
    """Each router declares its prefix (/auth, /items, /admin) once, on the APIRouter or at include_router"""
    found = package(observing_host)
    for name, (prefix, _) in ROUTERS.items():
        router = router_of(found, name)
        for shape, served, declared in mounted(found, name):
            own_prefix = router["prefix"]
            relative = declared.path[len(own_prefix) :] if declared.path.startswith(own_prefix) else declared.path
            given = served.path[: len(served.path) - len(relative)] if served.path.endswith(relative) else None
            if relative == "/" and given is not None:
                given = given.rstrip("/")
            expect(
                given == prefix,
                f"In app/routers/{name}.py the path of {shape[0]} {served.path} should not repeat the prefix: "
                f'declare prefix="{prefix}" once (APIRouter(prefix=...) or include_router(prefix=...)).',
                expected=f'a route path relative to {prefix} (like "{served.path[len(prefix) :] or ""}")',
                got=f"the path {relative!r} in the router, prefixed with {given!r} by the router or include_router",
            )


def test_openapi_tags_match_routers(observing_host: Any) -> None:
    """In the OpenAPI schema every /auth, /items and /admin operation carries its router's tag"""
    schema = observing_host.probe("openapi")
    paths = schema.get("paths", {}) if isinstance(schema, dict) else {}
    seen = set()
    for path, operations in paths.items():
        tag = path.strip("/").split("/")[0]
        if tag not in ROUTERS or not isinstance(operations, dict):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            seen.add((method.upper(), normalize(path)))
            tags = operation.get("tags") or []
            expect(
                tag in tags,
                f"{method.upper()} {path} lacks the tag {tag!r}; give its router tags=[{tag!r}].",
                expected=show([tag]),
                got=show(tags),
            )
    missing = [f"{m} {p}" for routes in ROUTERS.values() for m, p in routes[1] if (m, p) not in seen]
    expect(
        not missing,
        "Some contract routes are missing from the OpenAPI schema (/openapi.json).",
        expected="all of them",
        got="missing: " + ", ".join(missing),
    )


def test_router_tags_declared_once(observing_host: Any) -> None:
    """Each router declares its tag (auth, items, admin) once, on the APIRouter or at include_router, not both"""
    found = package(observing_host)
    for name in ROUTERS:
        on_router = list(router_of(found, name)["tags"])
        for shape, served, declared in mounted(found, name):
            served_tags = list(served.tags)
            declared_tags = list(declared.tags)
            split = len(served_tags) - len(declared_tags)
            from_include = served_tags[:split] if split >= 0 and served_tags[split:] == declared_tags else []
            if served_tags.count(name) > 1:
                fail(
                    f"{shape[0]} {served.path} carries the tag {name!r} {served_tags.count(name)} times: declare "
                    "it once, on APIRouter(...) or in include_router(...), not in both.",
                    expected=show([name]),
                    got=f"the tags {show(served_tags)}",
                )
            if name in on_router + from_include:
                continue
            on_endpoint = declared_tags[len(on_router) :]
            fail(
                f"{shape[0]} {served.path} should get the tag {name!r} from its router: declare "
                f"tags=[{name!r}] once, on APIRouter(...) in app/routers/{name}.py or in include_router(...), "
                "not on each endpoint.",
                expected=f"the router-level tag {name!r}",
                got=f"router-level tags {show(on_router + from_include)}, tags on the endpoint {show(on_endpoint)}",
            )


def test_items_router_requires_current_user(observing_host: Any) -> None:
    """The items router is guarded once, at router level, by get_current_user from app.dependencies"""
    check_guard(package(observing_host), "items")


def test_admin_router_requires_current_admin(observing_host: Any) -> None:
    """The admin router is guarded once, at router level, by get_current_admin from app.dependencies"""
    check_guard(package(observing_host), "admin")


def check_guard(found: dict[str, Any], name: str) -> None:
    guard_name = GUARDS[name]
    guard = dependencies_of(found).get(guard_name)
    router = router_of(found, name)
    for shape, served, declared in mounted(found, name):
        level = router_level(router, served, declared)
        calls = [dep["call"] for dep in level]
        if any(same(call, guard) for call in calls):
            continue
        same_name = [call for call in calls if call is not None and call["name"] == guard_name]
        hint = (
            f"a {guard_name} defined in {same_name[0]['module']}, not the one from app.dependencies"
            if same_name
            else "no router-level dependency on it"
            if not calls
            else "router-level dependencies on " + ", ".join(name_of(call) for call in calls)
        )
        fail(
            f"{shape[0]} {served.path} must be guarded by the router itself: "
            f"dependencies=[Depends({guard_name})] on APIRouter(...) or in include_router(...), "
            f"with {guard_name} imported from app.dependencies (not repeated on each endpoint).",
            expected=f"a router-level Depends(app.dependencies.{guard_name})",
            got=hint,
        )


# --- overrides reach the routes -------------------------------------------------------


def item_routes(body: dict) -> list[tuple[str, str, dict | None]]:
    """Every route of the items router, with `body` for the ones that take one."""
    return [
        ("GET", "/items", None),
        ("POST", "/items", body),
        ("GET", "/items/1", None),
        ("PUT", "/items/1", body),
        ("DELETE", "/items/1", None),
    ]


def test_items_follow_current_user_override(kit: Any) -> None:
    """Overriding app.dependencies.get_current_user changes what every /items route does"""
    api, headers = kit.api, kit.admin().headers
    override(kit.host, {"get_current_user": "teapot"})
    body = {"name": "override probe", "description": None, "price": 1}
    for method, path, json in (*item_routes(body),):
        response = api.request(method, path, json=json, headers=headers)
        expect_status(
            response,
            TEAPOT,
            f"With get_current_user overridden by one that answers {TEAPOT}, {method} "
            f"{path} should answer {TEAPOT}: it must depend on app.dependencies.get_current_user.",
        )


def test_admin_follows_current_admin_override(kit: Any) -> None:
    """Overriding app.dependencies.get_current_admin changes what every /admin route does"""
    api, headers = kit.api, kit.admin().headers
    override(kit.host, {"get_current_admin": "teapot"})
    for method, path in (("GET", "/admin/stats"), ("GET", "/admin/users"), ("DELETE", "/admin/users/nobody")):
        response = api.request(method, path, headers=headers)
        expect_status(
            response,
            TEAPOT,
            f"With get_current_admin overridden by one that answers {TEAPOT}, {method} "
            f"{path} should answer {TEAPOT}: it must depend on app.dependencies.get_current_admin.",
        )


def test_items_use_shared_pagination(kit: Any) -> None:
    """Overriding app.dependencies.pagination changes what GET /items does"""
    api, headers = kit.api, kit.admin().headers
    override(kit.host, {"pagination": "teapot"})
    expect_status(
        api.get("/items", headers=headers),
        TEAPOT,
        f"With pagination overridden by one that answers {TEAPOT}, GET /items should answer {TEAPOT}: "
        "it must take its page with Depends(pagination) from app.dependencies.",
    )


def test_routes_use_shared_get_db(kit: Any) -> None:
    """Overriding app.dependencies.get_db changes what register and every /items and /admin route do"""
    api, headers = kit.api, kit.admin().headers
    catch_admin_user(kit.host, api, headers)
    # Why replace the guards: they depend on get_db themselves, and must not answer for the routes.
    override(kit.host, {"get_current_user": "caught", "get_current_admin": "caught", "get_db": "teapot"})
    body = {"name": "get_db probe", "description": None, "price": 1}
    for method, path, json in (
        ("POST", "/auth/register", {"username": "probe_user", "password": "probe-password"}),
        *item_routes(body),
        ("GET", "/admin/stats", None),
        ("GET", "/admin/users", None),
        ("DELETE", "/admin/users/nobody", None),
    ):
        response = api.request(method, path, json=json, headers=headers)
        expect_status(
            response,
            TEAPOT,
            f"With get_db overridden by one that answers {TEAPOT} (and get_current_user and get_current_admin "
            f"overridden to return the admin), {method} {path} should answer {TEAPOT}: the route itself must "
            "receive the store with Depends(get_db) from app.dependencies, not a get_db of its own.",
        )


def catch_admin_user(host: Any, api: Any, headers: dict[str, str]) -> None:
    """Make the app host keep the object the learner's get_current_user returns for the admin
    (the "caught" override then returns it; None if it cannot be caught)."""
    override(host, {"get_current_admin": "spy"})
    try:
        api.get("/admin/stats", headers=headers)
    finally:
        override(host, {"clear": ""})
