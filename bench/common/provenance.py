"""Where, when and from what a benchmark record was made: the Python twin of provenance.hpp.

Every results record carries the object stamp() returns under "provenance", with the same keys
as the C++ benchmarks write, so that scripts/figures.py reads both alike:

    from provenance import Provenance          # bench/common on sys.path
    prov = Provenance(build_dir=ROOT / "build", model=path_to_gguf)
    record["provenance"] = prov.stamp()

The git commit, dirty flag and diff hash are read when the harness starts (the harness runs the
binaries of `build_dir`, built from that tree); the load average and time of "written" when a
record is stamped. Compiler, flags and the llama.cpp commit come from the build directory's
CMakeCache.txt, which is what built the binaries the harness runs. Stdlib only.
"""
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = 1


def _run(argv, timeout=30):
    """Standard output of argv, or None when it cannot run or fails."""
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=str(ROOT))
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def git_state(root=ROOT):
    """{"commit", "dirty", and when dirty "diff_sha256" and "untracked_files"}."""
    head = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
    commit = head.decode().strip() if head else "unknown"
    status = _run(["git", "-C", str(root), "status", "--porcelain"])
    if status is None:
        return {"commit": commit, "dirty": None}
    lines = [x for x in status.decode(errors="replace").splitlines() if x]
    out = {"commit": commit, "dirty": bool(lines)}
    if lines:
        diff = _run(["git", "-C", str(root), "diff", "HEAD", "--binary"])
        out["diff_sha256"] = hashlib.sha256(diff).hexdigest() if diff is not None else None
        out["untracked_files"] = sum(1 for x in lines if x.startswith("??"))
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_vector():
    """The widest vector extension the CPU reports, as provenance.hpp's cpu_vector()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    for name in ("avx512f", "avx2", "sse4_2"):
                        if name in flags:
                            return name
                    break
    except OSError:
        pass
    return "unknown"


def memory_bytes():
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cmake_cache(build_dir):
    cache = {}
    try:
        with open(Path(build_dir) / "CMakeCache.txt", encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"^([A-Za-z_0-9]+):[A-Z]+=(.*)$", line.rstrip("\n"))
                if m:
                    cache[m.group(1)] = m.group(2)
    except OSError:
        pass
    return cache


def build_info(build_dir):
    """Compiler, build type, flags and llama.cpp commit of the build that made the binaries."""
    if build_dir is None:
        return {"compiler": "unknown", "build_type": "unknown", "flags": "unknown",
                "llama_cpp_commit": "unknown", "build_dir": None}
    cache = cmake_cache(build_dir)
    cxx = cache.get("CMAKE_CXX_COMPILER", "")
    version = _run([cxx, "--version"]) if cxx else None
    build_type = cache.get("CMAKE_BUILD_TYPE", "")
    flags = " ".join(x for x in (cache.get("CMAKE_CXX_FLAGS", ""),
                                 cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "")) if x)
    server = cache.get("CHIMERA_LLAMA_SERVER", "")
    m = re.search(r"llama\.cpp-([0-9a-f]+)-", server)
    llama = m.group(1) if m else (f"installed llama.cpp ({server})" if server else "unknown")
    return {"compiler": version.decode().splitlines()[0] if version else (cxx or "unknown"),
            "build_type": build_type or "unknown", "flags": flags.strip(),
            "llama_cpp_commit": llama, "build_dir": str(build_dir)}


def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def build_dir_of(binary):
    """The CMake build directory that made `binary` (the nearest parent with a CMakeCache.txt),
    or None."""
    for parent in Path(binary).resolve().parents:
        if (parent / "CMakeCache.txt").is_file():
            return parent
    return None


class Provenance:
    """Read once when a harness starts; stamp() for each record it writes."""

    def __init__(self, build_dir=None, model=None, server=None, argv=None, source_dir=ROOT):
        self.started = utc_now()
        self.loadavg_before = load_average()
        self.git = git_state(source_dir)
        self.command = shlex.join([sys.executable] + list(sys.argv if argv is None else argv))
        self.machine = {"cpu": cpu_model(), "vector": cpu_vector(), "cores": os.cpu_count(),
                        "memory_bytes": memory_bytes()}
        self.build = build_info(build_dir)
        self.model = None
        self.server = server
        if model is not None:
            self.set_model(model)

    def set_model(self, path):
        path = Path(path)
        try:
            self.model = {"path": str(path), "bytes": path.stat().st_size,
                          "hash": file_sha256(path), "hash_algorithm": "sha256 (whole file)"}
        except OSError:
            self.model = {"path": str(path), "bytes": None, "hash": None,
                          "hash_algorithm": "sha256 (whole file)"}

    def stamp(self):
        out = {"schema": SCHEMA, "git": dict(self.git), "command": self.command,
               "machine": dict(self.machine), "loadavg_before": self.loadavg_before,
               "loadavg_after": load_average(), "build": dict(self.build),
               "started": self.started, "written": utc_now()}
        if self.model:
            out["model"] = dict(self.model)
        if self.server:
            out["server"] = self.server
        return out
