"""The API's routers may be included in any order (api/app.py puts the busiest first): no
request is matched by routes of two routers, so the order of the routers never decides which
route answers (within a router, its routes keep their order)."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from starlette.routing import Match

from api.app import ROUTERS

# Values a path parameter may take: an id, a provider's or a carrier's name, a word.
FILLS = ("00000000-0000-4000-8000-000000000001", "stripe", "easypost", "stuck")


def routes() -> list[tuple[str, APIRoute]]:
    return [
        (module.__name__, route)
        for module in ROUTERS
        for route in module.router.routes
        if isinstance(route, APIRoute)
    ]


def test_no_request_is_matched_by_routes_of_two_routers() -> None:
    every = routes()
    assert len(every) > 30
    overlaps = []
    for _, route in every:
        for method, fill in ((m, f) for m in route.methods or () for f in FILLS):
            path = re.sub(r"\{[^}]*\}", fill, route.path)
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            matched = {name for name, r in every if r.matches(dict(scope))[0] == Match.FULL}
            if len(matched) > 1:
                overlaps.append((method, path, sorted(matched)))
    assert overlaps == []
