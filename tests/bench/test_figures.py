"""scripts/figures.py: the README's figure blocks are what the results files say.

  /usr/bin/python3 -m unittest discover -s tests/bench -v

Works on a copy of the pages and bench/results in a temporary tree, never on the checkout.
"""
import contextlib
import importlib.util
import io
import json
import shutil
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("figures", ROOT / "scripts/figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = figures.main(list(argv))
    return rc, out.getvalue() + err.getvalue()


class Verdicts(unittest.TestCase):
    def test_an_interval_that_includes_one_is_level(self):
        self.assertEqual(figures.verdict(1.25, 0.36), "level with")
        self.assertEqual(figures.verdict(1.52, 0.09), "ahead of")
        self.assertEqual(figures.verdict(0.52, 0.01), "behind")
        self.assertEqual(figures.verdict(1.0, None), "level with")

    def test_lower_is_better_turns_the_ratio_round(self):
        # peer ÷ ours = 0.5 on a time: the peer takes half as long, so we are behind
        self.assertEqual(figures.verdict(0.5, 0.1, ours_better_above_one=False), "ahead of")
        self.assertEqual(figures.verdict(2.0, 0.1, ours_better_above_one=False), "behind")

    def test_record_lines_compress_into_ranges(self):
        recs = [figures.Record({}, "x.jsonl", n) for n in (3, 4, 5, 9, 11, 12)]
        self.assertEqual(figures.lines_of(recs), "3-5, 9, 11-12")


class AgainstACopyOfTheTree(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="chimera-figures-"))
        for page in figures.PAGES:
            if (ROOT / page).exists():
                (self.tmp / page).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / page, self.tmp / page)
        shutil.copytree(ROOT / "bench/results", self.tmp / "bench/results",
                        ignore=shutil.ignore_patterns("plots", "*.png"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_a_changed_result_fails_until_rendered(self):
        path = self.tmp / "bench/results/inproc.jsonl"
        lines = path.read_text().splitlines()
        last = max(i for i, x in enumerate(lines) if json.loads(x).get("bench") == "aggregate")
        rec = json.loads(lines[last])
        rec["system_tps_inproc"] = rec["system_tps_inproc"] * 2 + 1
        lines[last] = json.dumps(rec)
        path.write_text("\n".join(lines) + "\n")
        rc, out = run("--check", "--root", str(self.tmp))
        self.assertEqual(rc, 1)
        self.assertIn("README.md", out)
        self.assertIn(f"{rec['system_tps_inproc']:,.0f}", out)
        rc, out = run("--root", str(self.tmp))
        self.assertEqual(rc, 0, out)
        rc, out = run("--check", "--root", str(self.tmp))
        self.assertEqual(rc, 0, out)

    def test_a_number_edited_in_the_page_fails(self):
        readme = self.tmp / "README.md"
        text = readme.read_text()
        start = text.index("<!-- figures:inproc-aggregate -->")
        row = text.index("| 1 | ", start)
        readme.write_text(text[:row] + "| 1 | 9" + text[row + len("| 1 | "):])
        rc, _ = run("--check", "--root", str(self.tmp))
        self.assertEqual(rc, 1)

    def test_a_comparison_outside_a_block_fails(self):
        readme = self.tmp / "README.md"
        readme.write_text(readme.read_text() + "\nWe are 3x faster than everyone.\n")
        rc, out = run("--check", "--root", str(self.tmp))
        self.assertEqual(rc, 1)
        self.assertIn("a comparison outside a generated block", out)

    def test_a_broken_results_line_is_named(self):
        path = self.tmp / "bench/results/banter.jsonl"
        path.write_text(path.read_text() + "{not json\n")
        rc, out = run("--check", "--root", str(self.tmp))
        self.assertEqual(rc, 2)
        self.assertIn("bench/results/banter.jsonl:", out)
        self.assertIn("not JSON", out)


if __name__ == "__main__":
    unittest.main()
