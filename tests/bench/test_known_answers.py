"""The Python harness's statistics against tests/metrics/known_answers.json, the file the C++
tests (tests/metrics/known_answers_test.cpp) check too: one set of answers for both.

  /usr/bin/python3 -m unittest discover -s tests/bench -v
"""
import importlib.util
import json
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare", ROOT / "bench/compare/compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)
KNOWN = json.loads((ROOT / "tests/metrics/known_answers.json").read_text())


def records(indices=None):
    rs = [dict(r, program="python") for r in KNOWN["records"]]
    return rs if indices is None else [rs[i] for i in indices]


class KnownAnswers(unittest.TestCase):
    def test_percentile(self):
        for case in KNOWN["percentile"]:
            values = case.get("values") or list(range(1, case["one_to"] + 1))
            with self.subTest(p=case["p"], n=len(values)):
                self.assertEqual(compare.percentile(values, case["p"]), case["expect"])

    def test_mean_sd(self):
        for case in KNOWN["mean_sd"]:
            with self.subTest(values=case["values"]):
                m, sd = compare.mean_sd(case["values"])
                if case["mean"] is None:
                    self.assertIsNone(m)
                else:
                    self.assertAlmostEqual(m, case["mean"], places=12)
                if case["sd"] is None:
                    self.assertIsNone(sd)
                else:
                    self.assertAlmostEqual(sd, case["sd"], places=12)

    def check_run(self, run, rs):
        f = compare.run_figures(rs, agents=run["agents"], lone_decode_tps=run["lone_decode_tps"],
                                floor_ns=run["loopback_floor_ns"])
        names = {"ttft_client_p50_ms": "ttft_client_p50", "ttft_client_p90_ms": "ttft_client_p90",
                 "ttft_client_p99_ms": "ttft_client_p99", "ttft_client_max_ms": "ttft_client_max",
                 "overhead_ttft_p50_ms": "overhead_ttft_p50",
                 "overhead_ttft_p99_ms": "overhead_ttft_p99", "e2e_p50_ms": "e2e_p50",
                 "delivery_lag_p50_ms": "delivery_lag_p50"}
        for key, want in run["expect"].items():
            with self.subTest(figure=key):
                self.assertAlmostEqual(f[names.get(key, key)], want, places=9)

    def test_run_with_a_failed_request(self):
        self.check_run(KNOWN["run"], records())

    def test_run_of_requests_that_streamed(self):
        run = KNOWN["run_ok_only"]
        self.check_run(run, records(run["records"]))

    def test_efficiency(self):
        self.assertAlmostEqual(compare.efficiency(800.0, 2, 400.0), 1.0, places=12)
        self.assertIsNone(compare.efficiency(800.0, 2, None))


if __name__ == "__main__":
    unittest.main()
