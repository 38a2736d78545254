#!/usr/bin/env python3
"""Fails when an #include points up the layers.

The engine's modules form one order (src/README.md describes each): a module may include its
own headers and those of modules before it in LAYERS, never one after it. The front ends (the C
ABI, the Python binding, the CLI) come last. Scans src/, include/, apps/ and python/src for
`#include <chimera/...>` and `#include "..."`, and prints file:line and the offending edge for
each include that points up.

Usage: scripts/check-includes.py [repository root]   (exit status 1 when an include points up)
"""

import pathlib
import re
import sys

# The layer order, lowest first: the same list as src/README.md's.
LAYERS = [
    "core",       # requests, completions, runtime, errors, install paths, text helpers
    "http",       # HTTP client, framing, timeouts and limits
    "backends",   # Ollama, OpenAI-compatible and in-process llama.cpp behind one interface
    "model",      # synthetic GGUF models and the model cache
    "client",     # stand-ins for backends' and model's llama.cpp parts (chimeraforge-client)
    "metrics",    # per-request figures and their summaries
    "ingest",     # benchmark files in, records out
    "workflow",   # ingest -> analysis -> report, with an agent's calls
    "pool",       # endpoint pools and routing
    "engine",     # agents and executors over pools
    "scenarios",  # many agents running a scenario, measured (`multi`)
    "banter",     # scenes of characters talking
    "synth",      # the synthetic server (stands alone; only front ends and tests use it)
    "serve",      # the OpenAI- and Ollama-compatible server in front of pools (`serve`)
    "capi",       # the C ABI (include/chimera.h, src/capi)
    "python",     # the Python binding (python/src)
    "apps",       # the CLI (apps/chimeraforge)
]
RANK = {name: i for i, name in enumerate(LAYERS)}

SCANNED = ["src", "include", "apps", "python/src"]
SOURCE_SUFFIXES = {".h", ".hpp", ".cpp", ".c", ".cc"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def module_of(root: pathlib.Path, path: pathlib.Path):
    """The module a file of the repository belongs to, or None when it is in none."""
    try:
        rel = path.resolve().relative_to(root).parts
    except ValueError:
        return None
    if len(rel) >= 3 and rel[0] == "src":
        return rel[1]
    if len(rel) >= 3 and rel[0] == "include" and rel[1] == "chimera":
        return rel[2] if len(rel) >= 4 else "core"  # include/chimera/version.h and the like
    if rel == ("include", "chimera.h"):
        return "capi"
    if rel[0] == "apps":
        return "apps"
    if rel[:2] == ("python", "src"):
        return "python"
    return None


def resolve(root: pathlib.Path, including: pathlib.Path, bracket: str, name: str):
    """The module an include names, or None for a header outside the project."""
    if bracket == "<":
        if not name.startswith("chimera/") and name != "chimera.h":
            return None
        if name == "chimera.h":
            return "capi"
        parts = name.split("/")
        # <chimera/version.h> is generated into the build tree; it belongs to core.
        return parts[1] if len(parts) >= 3 else "core"
    # "..." is looked up beside the including file, then in src/ (the library's private include
    # root), then in include/.
    for base in (including.parent, root / "src", root / "include"):
        candidate = base / name
        if candidate.exists():
            return module_of(root, candidate)
    return None


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                        pathlib.Path(__file__).resolve().parent.parent).resolve()
    problems = []
    unknown = set()
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            source_module = module_of(root, path)
            if source_module is None:
                continue
            if source_module not in RANK:
                unknown.add(f"{path.relative_to(root)}: module '{source_module}' is not in LAYERS")
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                match = INCLUDE_RE.match(line)
                if not match:
                    continue
                target = resolve(root, path, match.group(1), match.group(2))
                if target is None or target == source_module:
                    continue
                if target not in RANK:
                    unknown.add(f"{path.relative_to(root)}:{number}: module '{target}' "
                                "is not in LAYERS")
                    continue
                if RANK[target] > RANK[source_module]:
                    problems.append(f"{path.relative_to(root)}:{number}: {source_module} -> "
                                    f"{target} ({match.group(2)}): {target} is above "
                                    f"{source_module} in the layer order")
    for line in sorted(unknown) + problems:
        print(line)
    if problems or unknown:
        print(f"{len(problems)} include(s) point up the layers, {len(unknown)} unknown module(s); "
              "the order: " + " < ".join(LAYERS))
        return 1
    print("includes point down the layers: " + " < ".join(LAYERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
