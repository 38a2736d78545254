"""What the examples share: where the model comes from.

Every example runs on the in-process backend with the project's tiny synthetic model by
default (random weights: the text is noise, every figure is real), or on a server you name:

  /usr/bin/python3 examples/python/quickstart.py                        # in-process, tiny model
  /usr/bin/python3 examples/python/quickstart.py --gguf my-model.gguf   # in-process, your model
  /usr/bin/python3 examples/python/quickstart.py --endpoint http://127.0.0.1:11434 \\
      --backend ollama --model llama3.2:1b                             # a running server
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]

try:
    import chimeraforge as cf
except ImportError:  # run from a checkout whose build did not write the .pth
    sys.path.insert(0, str(ROOT / "build" / "python"))
    import chimeraforge as cf


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--gguf", help="a GGUF file to run in this process (default: the tiny "
                                  "synthetic model, written once into build/models/)")
    g.add_argument("--endpoint", help="a server URL instead (Ollama, llama-server, vLLM, ...)")
    g.add_argument("--backend", default="openai", choices=["ollama", "openai"],
                   help="the server's protocol (with --endpoint)")
    g.add_argument("--model", default="", help="model name sent to the server")


def tiny_model() -> Path:
    """The tiny synthetic model: the build's test model, or one written with the CLI."""
    for p in (ROOT / "build/test-models/tiny-seed42.gguf", ROOT / "build/models/tiny.gguf"):
        if p.exists():
            return p
    cli = ROOT / "build/apps/chimeraforge/chimeraforge"
    if not cli.exists() and shutil.which("chimeraforge"):
        cli = Path(shutil.which("chimeraforge"))
    out = ROOT / "build/models/tiny.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing the tiny synthetic model to {out}", file=sys.stderr)
    subprocess.run([str(cli), "model", "synth", "--preset", "tiny", "--out", str(out)],
                   check=True)
    return out


def endpoint(args: argparse.Namespace, parallel: int = 8) -> "cf.Endpoint":
    if args.endpoint:
        return cf.Endpoint(args.endpoint, backend=args.backend)
    gguf = Path(args.gguf) if args.gguf else tiny_model()
    return cf.Endpoint(str(gguf), backend="llama",
                       llama=cf.LlamaOptions(parallel=parallel, ctx_per_seq=2048))


def pools(args: argparse.Namespace, names: List[str], parallel: int = 8) -> List["cf.Pool"]:
    """One pool per name, each on the chosen endpoint ("Dual Ollama" style: with two servers,
    give each pool its own)."""
    return [cf.Pool(name, [endpoint(args, parallel)], model=args.model) for name in names]


def first_line(text: str, limit: Optional[int] = 100) -> str:
    line = " ".join(text.split())
    return line if limit is None or len(line) <= limit else line[:limit] + "..."
