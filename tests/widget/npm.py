"""The npm packages some browser tests load (React, Vue, axe-core), from ``tests/widget/js``:
pinned in its package-lock.json, installed by ``scripts/test`` (``npm ci``), and handed to
the page from ``node_modules`` by a test's own web server (:data:`route`), or injected by
Playwright from the file (axe-core), never from a CDN.

React 19 ships CommonJS only (no browser build since React 19), so :data:`route` wraps its
files as ES modules for an import map: ``module``, ``exports``, ``process.env`` and a
``require`` of the other wrapped packages, then its ``exports.name = ...`` as named exports.
That wrapper is coupled to React's file layout, checked with react / react-dom 19.3.1: each
``cjs/*.development.js`` file requires only ``react``, ``react-dom`` and ``scheduler``, and
assigns its exports as ``exports.name = ...``. A React whose layout changes fails
test_frameworks.py loudly (a missing module or export), it cannot pass by accident.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.services import unavailable

NODE_MODULES = Path(__file__).resolve().with_name("js") / "node_modules"
PREFIX = "/npm/"
"""Where the page finds them, on the test server that serves the page."""

COMMONJS = {
    "react": "react/cjs/react.development.js",
    "react-dom": "react-dom/cjs/react-dom.development.js",
    "react-dom/client": "react-dom/cjs/react-dom-client.development.js",
    "scheduler": "scheduler/cjs/scheduler.development.js",
}
"""Bare specifiers wrapped as ES modules, and the CommonJS file each one stands for."""
ES_MODULES = {"vue": "vue/dist/vue.esm-browser.js"}
"""Bare specifiers served as they are: Vue's full ES build (runtime and template compiler)."""


def node_modules() -> Path:
    """``tests/widget/js/node_modules``, or skip (fail in CI) when it was not installed."""
    if not (NODE_MODULES / ".package-lock.json").is_file():
        unavailable(f"{NODE_MODULES} is missing (npm ci in tests/widget/js; scripts/test does)")
    return NODE_MODULES


def import_map() -> str:
    """The ``<script type="importmap">`` that makes ``import ... from "react"`` (or "vue")
    load what :data:`route` serves."""
    imports = {name: f"{PREFIX}{name}.js" for name in COMMONJS}
    imports |= {name: f"{PREFIX}{path}" for name, path in ES_MODULES.items()}
    return f'<script type="importmap">{json.dumps({"imports": imports})}</script>'


async def npm_file(request: Request) -> Response:
    """``/npm/<file>``: a file of node_modules, or the ES module wrapping a CommonJS one."""
    root = NODE_MODULES  # the test checked it with node_modules()
    path = request.path_params["path"]
    wrapped = {f"{name}.js": file for name, file in COMMONJS.items()}
    if path in wrapped:
        body = as_es_module((root / wrapped[path]).read_text())
    else:
        file = (root / path).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            return PlainTextResponse(f"not in node_modules: {path}", status_code=404)
        body = file.read_text()
    return Response(body, media_type="text/javascript")


route = Route(PREFIX + "{path:path}", npm_file)
"""Add it to a test server's routes to serve what :func:`import_map` points at."""


def as_es_module(source: str) -> str:
    """A CommonJS file of React's as an ES module: its ``module.exports`` as the default
    export, each ``exports.name = ...`` as a named export."""
    requires = sorted(set(re.findall(r'require\("([^"]+)"\)', source)))
    names = sorted(set(re.findall(r"\bexports\.([A-Za-z_$][\w$]*)\s*=", source)))
    imports = [f'import dependency{i} from "{name}";' for i, name in enumerate(requires)]
    table = ", ".join(f'"{name}": dependency{i}' for i, name in enumerate(requires))
    return "\n".join(
        [
            *imports,
            "const module = { exports: {} };",
            "const exports = module.exports;",
            'const process = { env: { NODE_ENV: "development" } };',
            f"const required = {{ {table} }};",
            "const require = (name) => required[name];",
            source,
            "export default module.exports;",
            f"export const {{ {', '.join(names)} }} = module.exports;",
        ]
    )
