"""bench/common/provenance.py on a scratch git repository, and against provenance.hpp: a record
made from a dirty tree says so, with the same diff hash from either language.

  /usr/bin/python3 -m unittest discover -s tests/bench -v

CHIMERA_PROVENANCE_TEST names the C++ helper's test program (bench/common/provenance_test.cpp,
built as chimera_provenance_test); without it the cross-check is skipped, saying so.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench/common"))
import provenance  # noqa: E402

CPP = os.environ.get("CHIMERA_PROVENANCE_TEST")


class ScratchRepo(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="chimera-provenance-"))
        (self.dir / "a.txt").write_text("one\n")
        for argv in (["init", "-q"], ["add", "a.txt"],
                     ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
            subprocess.run(["git", "-C", str(self.dir)] + argv, check=True, capture_output=True)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_clean_tree(self):
        git = provenance.git_state(self.dir)
        self.assertEqual(len(git["commit"]), 40)
        self.assertIs(git["dirty"], False)
        self.assertNotIn("diff_sha256", git)

    def test_dirty_tree_says_so(self):
        (self.dir / "a.txt").write_text("two\n")
        (self.dir / "new.txt").write_text("untracked\n")
        git = provenance.git_state(self.dir)
        self.assertIs(git["dirty"], True)
        diff = subprocess.run(["git", "-C", str(self.dir), "diff", "HEAD", "--binary"],
                              capture_output=True, check=True).stdout
        self.assertEqual(git["diff_sha256"], hashlib.sha256(diff).hexdigest())
        self.assertEqual(git["untracked_files"], 1)

    def test_stamp_has_every_promised_key(self):
        model = self.dir / "m.gguf"
        model.write_bytes(b"abc")
        p = provenance.Provenance(model=model, source_dir=self.dir).stamp()
        for key in ("schema", "git", "command", "machine", "loadavg_before", "loadavg_after",
                    "build", "started", "written", "model"):
            self.assertIn(key, p)
        self.assertEqual(p["model"]["hash"],
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")

    @unittest.skipUnless(CPP, "CHIMERA_PROVENANCE_TEST is not set (the C++ helper's test "
                              "program, built as chimera_provenance_test)")
    def test_cpp_and_python_agree(self):
        (self.dir / "a.txt").write_text("two\n")
        out = subprocess.run([CPP, "--print", str(self.dir)], capture_output=True, text=True,
                             check=True).stdout
        cpp = json.loads(out)
        py = provenance.Provenance(source_dir=self.dir).stamp()
        self.assertEqual(cpp["git"], py["git"])
        self.assertEqual(set(cpp), set(py))
        self.assertEqual(cpp["machine"]["cpu"], py["machine"]["cpu"])
        self.assertEqual(cpp["machine"]["vector"], py["machine"]["vector"])
        self.assertEqual(cpp["machine"]["memory_bytes"], py["machine"]["memory_bytes"])


if __name__ == "__main__":
    unittest.main()
