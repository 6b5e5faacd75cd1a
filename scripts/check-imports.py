#!/usr/bin/env python3
"""Checks the import graph of every crate's src/: no import circle between files, and in
jwkstash-jwks no room importing a room above it (see CONTRIBUTING.md).

    python3 scripts/check-imports.py          # exit 1 and the offending imports if any

A file's imports are the `crate::...` and `super::...` paths in its code (comments and doc
links are ignored: a doc link is not a dependency). Run by CI.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# jwkstash-jwks: what each room may import, by rank (a room imports its own rank or lower).
JWKS_SRC = "crates/jwks-client/src"
RANKS = {
    "jose": 0,
    "error": 0,
    "stats": 0,
    "source": 1,
    "store": 2,
    "verify": 3,
    "issuers": 4,
    "testkit": 5,
    "lib": 5,
}


def modules(src):
    """{module path: code without comments} for every .rs file under `src`."""
    found = {}
    for directory, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, src)[:-3]
            module = relative.replace(os.sep, "::")
            module = re.sub(r"(^|::)mod$", "", module) or "lib"
            with open(path, encoding="utf-8") as file:
                code = "\n".join(line.split("//")[0] for line in file.read().splitlines())
            found[module] = code
    return found


def imports(found):
    """{module: set of modules it names}, each path resolved to the longest known module."""
    graph = {module: set() for module in found}
    for module, code in found.items():
        paths = re.findall(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", code)
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        paths += [
            (parent + "::" if parent else "") + path
            for path in re.findall(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", code)
        ]
        for path in paths:
            parts = path.split("::")
            for end in range(len(parts), 0, -1):
                candidate = "::".join(parts[:end])
                if candidate in found:
                    if candidate != module and not module.startswith(candidate + "::") \
                            and not candidate.startswith(module + "::"):
                        graph[module].add(candidate)
                    break
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room(module):
    return module.split("::")[0]


def main():
    failures = []
    crates = ["src"] + sorted(
        os.path.join("crates", name, "src")
        for name in os.listdir(os.path.join(ROOT, "crates"))
        if os.path.isdir(os.path.join(ROOT, "crates", name, "src"))
    )
    if os.path.isdir(os.path.join(ROOT, "bindings/python/src")):
        crates.append("bindings/python/src")
    for src in crates:
        graph = imports(modules(os.path.join(ROOT, src)))
        for component in cycles(graph):
            failures.append(f"{src}: import circle among {', '.join(component)}")
        if src != JWKS_SRC:
            continue
        for module, targets in sorted(graph.items()):
            for target in sorted(targets):
                own, other = RANKS.get(room(module)), RANKS.get(room(target))
                if own is None or other is None:
                    failures.append(f"{src}: {module} is in no room of scripts/check-imports.py")
                elif other > own:
                    failures.append(f"{src}: {module} imports {target}, a room above its own")
    for failure in sorted(set(failures)):
        print(failure)
    if failures:
        return 1
    print(f"no import circle in {len(crates)} crates; jwkstash-jwks's rooms import downwards only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
