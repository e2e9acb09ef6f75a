"""The npm packages some browser tests load (React, Vue, axe-core), from ``tests/widget/js``:
pinned in its package-lock.json, installed by ``scripts/test`` (``npm ci``), and handed to
the page by Playwright from ``node_modules``, never from a CDN.

React 19 ships CommonJS only (no browser build since React 19), so :func:`serve` wraps its
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

from playwright.async_api import BrowserContext, Route

from tests.services import unavailable

NODE_MODULES = Path(__file__).resolve().with_name("js") / "node_modules"
PREFIX = "/npm/"
"""Where the page finds them, on the origin of the page that asks."""

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
    load what :func:`serve` serves."""
    imports = {name: f"{PREFIX}{name}.js" for name in COMMONJS}
    imports |= {name: f"{PREFIX}{path}" for name, path in ES_MODULES.items()}
    return f'<script type="importmap">{json.dumps({"imports": imports})}</script>'


async def serve(context: BrowserContext, origin: str) -> None:
    """Answer ``{origin}/npm/...`` in ``context`` from node_modules (CommonJS wrapped)."""
    root = node_modules()
    wrapped = {f"{PREFIX}{name}.js": path for name, path in COMMONJS.items()}

    async def answer(route: Route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0]
        if path in wrapped:
            body = as_es_module((root / wrapped[path]).read_text())
        else:
            file = (root / path.removeprefix(PREFIX)).resolve()
            if not file.is_relative_to(root) or not file.is_file():
                await route.fulfill(status=404, body=f"not in node_modules: {path}")
                return
            body = file.read_text()
        await route.fulfill(body=body, content_type="text/javascript; charset=utf-8")

    await context.route(f"{origin}{PREFIX}**", answer)


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
