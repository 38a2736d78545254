"""Tests of bench/compare/first_lag.py: hand-made records files with known lags.

  /usr/bin/python3 -m unittest discover -s tests/bench -v
"""

import importlib.util
import io
import json
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("first_lag", ROOT / "bench/compare/first_lag.py")
first_lag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(first_lag)

MS = 1_000_000


def write_records(path, rows):
    """rows: (request, [lags in ms], ok); a header line first, as the programs write."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "header", "program": "test"}) + "\n")
        for request, lags, ok in rows:
            f.write(json.dumps({"agent": 0, "request": request, "ok": ok,
                                "lags_ns": [int(x * MS) for x in lags]}) + "\n")


class FirstLag(unittest.TestCase):
    def test_first_chunks_of_first_and_later_requests_and_the_rest(self):
        with tempfile.TemporaryDirectory() as d:
            write_records(Path(d) / "conc-2-pinned-x-r0.jsonl", [
                (0, [10, 1, 1], True),
                (0, [20, 1, 2], True),
                (1, [3, 1, 1], True),
                (2, [5, 4, 1], True),
                (1, [99, 99], False),  # a failed request is left out
            ])
            first0, later, rest = first_lag.summarize(Path(d) / "conc-2-pinned-x-r0.jsonl")
            self.assertEqual(first0, [10 * MS, 20 * MS])
            self.assertEqual(later, [3 * MS, 5 * MS])
            self.assertEqual(rest, sorted(x * MS for x in [1, 1, 1, 2, 1, 1, 4, 1]))
            self.assertEqual(first_lag.pct(first0, 50), 10.0)  # compare.py's nearest rank
            self.assertEqual(first_lag.pct(first0, 90), 20.0)
            self.assertEqual(first_lag.pct(rest, 50), 1.0)
            out = io.StringIO()
            with redirect_stdout(out):
                self.assertEqual(first_lag.main([d]), 0)
            line = [x for x in out.getvalue().splitlines() if x.startswith("conc-2")][0]
            self.assertEqual(line.split()[1:], ["10.00", "20.00", "3.00", "5.00", "1.00", "4.00"])

    def test_no_records_and_bad_lines_are_clear_errors(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(SystemExit) as e:
                first_lag.main([d])
            self.assertIn("no records files", str(e.exception.code))
            bad = Path(d) / "conc-1-x.jsonl"
            bad.write_text('{"request": 0}\nnot json\n', encoding="utf-8")
            with self.assertRaises(SystemExit) as e:
                first_lag.main([d])
            self.assertIn("conc-1-x.jsonl:2: not JSON", str(e.exception.code))


if __name__ == "__main__":
    unittest.main()
