"""Tests of the comparison harness (bench/compare/compare.py).

  /usr/bin/python3 -m unittest discover -s tests/bench -v

The figure functions get hand-made records whose answers are worked out below; then each
program (chimeraforge multi, the Python peer, the Rust peer) runs against a real synthetic
server started here, and its records must pass bench/peers/check_records.py and give sane
figures. CHIMERA_CLI names the chimeraforge binary (default: build/apps/chimeraforge/
chimeraforge); the Rust peer's part is skipped, saying so, when its binary is not built, and
the Python peer's when /usr/bin/python3 has no httpx.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare", ROOT / "bench/compare/compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

CLI = os.environ.get("CHIMERA_CLI", str(ROOT / "build/apps/chimeraforge/chimeraforge"))
PYTHON = "/usr/bin/python3"
RUST_PEER = ROOT / "bench/peers/rust/target/release/rust-peer"
CHECK = ROOT / "bench/peers/check_records.py"
HAVE_HTTPX = subprocess.run([PYTHON, "-c", "import httpx"], capture_output=True).returncode == 0
SKIP_PYTHON = ("the Python peer needs Debian's python3-httpx for /usr/bin/python3: "
               "bash scripts/setup-peers.sh")

B = 1_000_000_000  # a CLOCK_MONOTONIC origin for the hand-made records
MS = 1_000_000


def rec(agent, request, send, first, last, done, first_byte, tokens, lags, ok=True, error=""):
    lags = list(lags)
    return {"program": "python", "agent": agent, "request": request, "ok": ok, "error": error,
            "t_send_ns": send, "t_first_token_ns": first, "t_last_token_ns": last,
            "t_done_ns": done, "first_byte_server_ns": first_byte, "tokens_out": tokens,
            "chunks": len(lags), "lag_sum_ns": sum(lags), "lag_max_ns": max(lags, default=0),
            "stalls": sum(1 for x in lags if x > 1_000_000), "lags_ns": lags}


# Two agents, two requests each; agent 1's second request failed before any token.
#   r1: ttft 2 ms, overhead 0.5 ms, decode 10 / 10 ms = 1000/s, e2e 13 ms, 1 stall of 11 chunks
#   r2: ttft 1 ms, overhead 0.5 ms, decode 10 / 20 ms = 500/s,  e2e 22 ms, 0 stalls of 11
#   r3: ttft 4 ms, overhead 1 ms,   decode 5 / 5 ms   = 1000/s, e2e 9 ms,  6 stalls of 6
RECORDS = [
    rec(0, 0, B, B + 2 * MS, B + 12 * MS, B + 13 * MS, B + 1_500_000, 11,
        [100_000] * 10 + [2_000_000]),
    rec(0, 1, B + 14 * MS, B + 15 * MS, B + 35 * MS, B + 36 * MS, B + 14_500_000, 11,
        [200_000] * 11),
    rec(1, 0, B + 1 * MS, B + 5 * MS, B + 10 * MS, B + 10 * MS, B + 4 * MS, 6,
        [1_500_000] * 6),
    rec(1, 1, B + 11 * MS, None, None, B + 20 * MS, None, None, [], ok=False,
        error="stream cut short"),
]


class Percentiles(unittest.TestCase):
    def test_nearest_rank(self):
        hundred = list(range(1, 101))
        self.assertEqual(compare.percentile(hundred, 50), 50)
        self.assertEqual(compare.percentile(hundred, 90), 90)
        self.assertEqual(compare.percentile(hundred, 99), 99)
        self.assertEqual(compare.percentile(hundred, 100), 100)
        self.assertEqual(compare.percentile([4, 1, 3, 2], 50), 2)  # the lower middle, no mean
        self.assertEqual(compare.percentile([3, 1, 2], 50), 2)
        self.assertEqual(compare.percentile(list(range(1, 11)), 90), 9)
        self.assertEqual(compare.percentile(list(range(1, 11)), 99), 10)
        self.assertEqual(compare.percentile([7], 99), 7)
        self.assertIsNone(compare.percentile([], 50))

    def test_mean_and_sample_sd(self):
        self.assertEqual(compare.mean_sd([1.0, 2.0, 3.0]), (2.0, 1.0))
        self.assertEqual(compare.mean_sd([5.0]), (5.0, None))
        self.assertEqual(compare.mean_sd([None, 4.0, 6.0]), (5.0, 2 ** 0.5))
        self.assertEqual(compare.mean_sd([]), (None, None))


class Figures(unittest.TestCase):
    def test_per_request(self):
        f = compare.request_figures(RECORDS[0])
        self.assertEqual(f["ttft_client"], 2 * MS)
        self.assertEqual(f["overhead_ttft"], 500_000)
        self.assertEqual(f["e2e"], 13 * MS)
        self.assertAlmostEqual(f["decode_tps_client"], 1000.0, places=9)
        failed = compare.request_figures(RECORDS[3])
        self.assertEqual(set(failed.values()), {None})

    def test_run_figures(self):
        f = compare.run_figures(RECORDS, agents=2, lone_decode_tps=400.0, floor_ns=100_000)
        self.assertEqual((f["requests"], f["errors"], f["tokens"]), (4, 1, 28))
        # ttft [2, 1, 4] ms; overhead [0.5, 0.5, 1]; e2e [13, 22, 9]
        self.assertEqual((f["ttft_client_p50"], f["ttft_client_p90"], f["ttft_client_p99"],
                          f["ttft_client_max"]), (2.0, 4.0, 4.0, 4.0))
        self.assertEqual((f["overhead_ttft_p50"], f["overhead_ttft_p99"]), (0.5, 1.0))
        self.assertEqual((f["e2e_p50"], f["e2e_max"]), (13.0, 22.0))
        # decode [1000, 500, 1000] -> nearest-rank median 1000
        self.assertAlmostEqual(f["decode_tps_client"], 1000.0, places=9)
        # 28 tokens from the first send (B) to the last token (B + 35 ms)
        self.assertAlmostEqual(f["system_tps"], 800.0, places=9)
        # 800 / (2 agents x 400)
        self.assertAlmostEqual(f["efficiency"], 1.0, places=12)
        # 7 stalls of 28 chunks
        self.assertEqual(f["stall_rate"], 0.25)
        # agent 0 busy 36 ms, agent 1 19 ms: (36 + 19) / (2 x 36)
        self.assertAlmostEqual(f["balance"], 55 / 72, places=12)
        # (14.2 ms of lags - 28 chunks x 0.1 ms) / (13 + 22 + 9) ms
        self.assertAlmostEqual(f["contention"], 11_400_000 / 44_000_000, places=12)
        self.assertEqual(f["loopback_floor"], 0.1)
        # 28 lags: ten 0.1 ms, eleven 0.2 ms, six 1.5 ms, one 2 ms
        self.assertEqual((f["delivery_lag_p50"], f["delivery_lag_max"]), (0.2, 2.0))

    def test_parts(self):
        self.assertAlmostEqual(compare.system_tps(RECORDS), 800.0, places=9)
        self.assertEqual(compare.stall_rate(RECORDS), 0.25)
        self.assertAlmostEqual(compare.balance(RECORDS, 2), 55 / 72, places=12)
        self.assertAlmostEqual(compare.contention(RECORDS, 0), 14_200_000 / 44_000_000,
                               places=12)
        self.assertIsNone(compare.contention(RECORDS, None))
        self.assertAlmostEqual(compare.efficiency(800.0, 4, 100.0), 2.0)
        self.assertIsNone(compare.efficiency(800.0, 4, None))
        lone = [rec(0, 0, B, B + MS, B + 4 * MS, B + 4 * MS, B, 4, [300, 100, 200, 500])]
        self.assertEqual(compare.loopback_floor(lone), 200)  # nearest-rank median of four

    def test_without_server_timestamps(self):
        # llama-server: no server_sent_ns, so no overhead, lags, stalls or contention
        r = rec(0, 0, B, B + 3 * MS, B + 13 * MS, B + 14 * MS, None, 11, [])
        f = compare.run_figures([r], agents=1)
        self.assertIsNone(f["overhead_ttft_p50"])
        self.assertIsNone(f["stall_rate"])
        self.assertIsNone(f["contention"])
        self.assertEqual(f["ttft_client_p50"], 3.0)
        self.assertAlmostEqual(f["decode_tps_client"], 1000.0, places=9)

    def test_llama_timings(self):
        log = ("0.05.378.766 I slot print_timing: id  0 | task 9 | prompt eval time =      17.44 "
               "ms /     1 tokens (   17.44 ms per token,    57.33 tokens per second)\n"
               "0.05.378.773 I slot print_timing: id  0 | task 9 |        eval time =      37.66 "
               "ms /    64 tokens (    0.60 ms per token,  1672.68 tokens per second)\n")
        self.assertEqual(compare.llama_timings(log), ([1672.68], [17.44]))


class Summary(unittest.TestCase):
    @staticmethod
    def make(program, rep, value, failed=False):
        return {"row": "r", "program": program, "rep": rep, "failed": failed,
                "figures": {"x": {"value": None if failed else value}}}

    def test_ratios_per_repetition_and_failures(self):
        runs = [self.make("chimeraforge", 0, 1.0), self.make("python", 0, 3.0),
                self.make("chimeraforge", 1, 2.0), self.make("python", 1, 4.0),
                self.make("rust", 0, 0.5), self.make("rust", 1, 0, failed=True)]
        s = compare.summarize(runs, "r", "x", ["chimeraforge", "python", "rust"])
        self.assertEqual((s["chimeraforge"]["mean"], s["chimeraforge"]["n"]), (1.5, 2))
        self.assertEqual(s["python"]["ratio_mean"], 2.5)  # (3/1 + 4/2) / 2, not 3.5 / 1.5
        self.assertEqual((s["rust"]["n"], s["rust"]["failed_runs"]), (1, 1))
        self.assertEqual(s["rust"]["ratio_mean"], 0.5)
        self.assertEqual(compare.fmt_cell(s["rust"], 1, "ms"), "0.500 (1 failed)")
        all_failed = compare.summarize([self.make("python", 0, 0, failed=True)], "r", "x",
                                       ["python"])
        self.assertEqual(compare.fmt_cell(all_failed["python"], 1, "ms"), "failed")


class Children(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="chimera-compare-test-"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_rss_is_the_programs_own(self):
        # wait4's ru_maxrss must not carry the harness's own (~25 MB) peak into the child's
        small = compare.run_child(["/bin/true"], 30, self.tmp / "o", self.tmp / "e")
        self.assertEqual(small["exit_code"], 0)
        self.assertLess(small["rss_peak"], 8_000_000)
        big = compare.run_child([PYTHON, "-c", "x = bytearray(80_000_000); x[::4096] = "
                                 "b'1' * len(x[::4096])"], 30, self.tmp / "o", self.tmp / "e")
        self.assertGreater(big["rss_peak"], 80_000_000)

    def test_timeout_kills(self):
        res = compare.run_child(["/bin/sleep", "30"], 0.5, self.tmp / "o", self.tmp / "e")
        self.assertTrue(res["timed_out"])
        self.assertLess(res["wall_s"], 10)

    def test_missing_program(self):
        res = compare.run_child([str(self.tmp / "nope")], 5, self.tmp / "o", self.tmp / "e")
        self.assertTrue(res["spawn_error"] or res["exit_code"] != 0)


class Pinning(unittest.TestCase):
    def test_pinned_rows_first_without_llama(self):
        rows = compare.table_rows(compare.parse_args(["--agents", "1", "16"]))
        titles = [title for title, _ in rows]
        self.assertTrue(titles[0].endswith(", pinned"))
        self.assertFalse(any("llama" in t for t in titles if t.endswith(", pinned")))
        pinned = [row for title, entries in rows if title.endswith(", pinned")
                  for row, *_ in entries]
        self.assertIn("conc-16-pinned", pinned)
        self.assertIn("startup-pinned", pinned)
        off = compare.table_rows(compare.parse_args(["--agents", "1", "16", "--pin", "off"]))
        self.assertFalse(any(title.endswith(", pinned") for title, _ in off))

    @unittest.skipUnless(len(os.sched_getaffinity(0)) >= 2, "pinning needs two CPUs")
    def test_apply_pins_servers_and_the_harness(self):
        before = os.sched_getaffinity(0)
        pinning = compare.Pinning()
        child = subprocess.Popen(["/bin/sleep", "30"])

        class Server:  # what Pinning.apply reads of compare.Server
            name, proc = "synth", child
        try:
            pinning.apply([Server()], True)
            self.assertEqual(os.sched_getaffinity(child.pid), pinning.server)
            self.assertEqual(os.sched_getaffinity(0), pinning.client)
            self.assertFalse(pinning.server & pinning.client)
            pinning.apply([Server()], False)
            self.assertEqual(os.sched_getaffinity(child.pid), set(pinning.all))
            self.assertEqual(os.sched_getaffinity(0), set(pinning.all))
        finally:
            os.sched_setaffinity(0, before)
            child.kill()
            child.wait()


@unittest.skipUnless(os.access(CLI, os.X_OK), f"chimeraforge is not built ({CLI})")
class AgainstSynthServer(unittest.TestCase):
    """Every program against a real synthetic server: 4 agents x 2 requests, 10 tokens at
    200 tokens/s."""

    AGENTS, REQUESTS, TOKENS, RATE = 4, 2, 10, 200.0

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="chimera-compare-test-"))
        cls.server = compare.start_synth(CLI, "synth-test", 0, cls.RATE, cls.TOKENS, 1, cls.tmp)
        cls.args = compare.parse_args(["--cli", CLI, "--rust-peer", str(RUST_PEER),
                                       "--run-timeout", "60"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def url(self):
        return self.server.url

    def floor_client(self):
        """Builds the floor client once per class (None over --tls or without cc: skipped)."""
        cls = type(self)
        if getattr(self.args, "ca_file", None):
            self.skipTest("the floor client speaks plain http only")
        if "floor_built" not in cls.__dict__:
            cls.floor_built = compare.build_floor(self.args) if shutil.which("cc") else None
        if cls.floor_built is None:
            self.skipTest("the floor client needs cc and plain http")
        self.args.floor = cls.floor_built

    def run_program(self, program, min_rss=1_000_000):
        scen = compare.Scenario("test", "synth-test", "ollama", "synth", self.AGENTS,
                                self.REQUESTS, self.TOKENS)
        records = self.tmp / f"{program}.jsonl"
        argv = compare.program_argv(self.args, program, scen, self.url(), records)
        res = compare.run_child(argv, 60, self.tmp / f"{program}.out", self.tmp / f"{program}.err")
        self.assertFalse(res["timed_out"], f"{program} timed out")
        self.assertEqual(res["exit_code"], 0,
                         f"{program} failed: {compare.tail(self.tmp / f'{program}.err')}")
        self.assertGreater(res["rss_peak"], min_rss)
        check = subprocess.run([PYTHON, str(CHECK), "--require-ok", "--tokens-out",
                                str(self.TOKENS), str(records)], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertEqual(compare.check_records_file(records), [])
        header, recs = compare.read_records(records)
        self.assertEqual(header["program"], program)
        floor = compare.loopback_floor(recs)
        f = compare.run_figures(recs, self.AGENTS, lone_decode_tps=self.RATE, floor_ns=floor)
        n = self.AGENTS * self.REQUESTS
        self.assertEqual((f["requests"], f["errors"], f["tokens"]), (n, 0, n * self.TOKENS))
        # The server paces 200 tokens/s, so each request's tokens span at least 9 gaps of 5 ms
        # and an agent's requests follow one another: the whole run cannot pass more tokens a
        # second than that allows. A request's own decode rate has no such bound: when its
        # first chunk is read late (the machine's load, which a test does not judge), the chunks
        # queued behind it are read at once.
        self.assertGreater(f["decode_tps_client"], 0)
        paced = self.AGENTS * self.TOKENS * self.RATE / (self.TOKENS - 1)
        self.assertLess(f["system_tps"], 1.05 * paced)
        self.assertGreater(f["system_tps"], 0)
        self.assertGreater(f["efficiency"], 0)
        self.assertLess(f["efficiency"], 2.0)
        for key in ("stall_rate", "balance"):
            self.assertGreaterEqual(f[key], 0.0, key)
            self.assertLessEqual(f[key], 1.0, key)
        self.assertGreater(f["balance"], 0.0)
        self.assertGreaterEqual(f["overhead_ttft_p50"], 0.0)  # the token came after it was sent
        self.assertGreaterEqual(f["ttft_client_p50"], f["overhead_ttft_p50"])
        # 9 gaps of 5 ms after the first token
        self.assertGreaterEqual(f["e2e_p50"], 9 * 1000 / self.RATE * 0.9)
        self.assertIsNotNone(f["contention"])
        self.assertLess(abs(f["contention"]), 1.0)
        for r in recs:
            self.assertEqual(len(r["lags_ns"]), r["chunks"])

    def startup(self, program):
        env = {"git_commit": "test", "cpu": "test", "cores": 1, "compiler": "test"}
        harness = compare.Harness(self.args, env, self.tmp)
        harness.servers["synth-conc"] = self.server
        run = harness.run_startup(program, 0, 0)
        self.assertFalse(run["failed"], f"{run['error']}\n{run['stderr_tail']}")
        startup = run["figures"]["startup"]["value"]
        self.assertGreater(startup, 0.0)
        self.assertLess(startup, 30_000.0)
        self.assertEqual(run["figures"]["startup"]["source"], "measured")

    def test_chimeraforge(self):
        self.run_program("chimeraforge")

    @unittest.skipUnless(HAVE_HTTPX, SKIP_PYTHON)
    def test_python_peer(self):
        self.run_program("python")

    @unittest.skipUnless(os.access(RUST_PEER, os.X_OK),
                         f"the Rust peer is not built ({RUST_PEER}): bash scripts/setup-peers.sh")
    def test_rust_peer(self):
        self.run_program("rust")

    def test_floor_client(self):
        # Its records pass the same checks and give the same figures: a static C program of a
        # few hundred kilobytes resident.
        self.floor_client()
        self.run_program("floor", min_rss=100_000)

    def test_startup_chimeraforge(self):
        self.startup("chimeraforge")

    def test_startup_floor(self):
        self.floor_client()
        self.startup("floor")

    @unittest.skipUnless(HAVE_HTTPX, SKIP_PYTHON)
    def test_startup_python(self):
        self.startup("python")

    @unittest.skipUnless(os.access(RUST_PEER, os.X_OK),
                         f"the Rust peer is not built ({RUST_PEER}): bash scripts/setup-peers.sh")
    def test_startup_rust(self):
        self.startup("rust")

    def test_a_failing_program_is_reported(self):
        args = compare.parse_args(["--cli", CLI, "--rust-peer", str(self.tmp / "missing-peer"),
                                   "--run-timeout", "10"])
        env = {"git_commit": "test", "cpu": "test", "cores": 1, "compiler": "test"}
        harness = compare.Harness(args, env, self.tmp)
        harness.servers["synth-test"] = self.server
        scen = compare.Scenario("test", "synth-test", "ollama", "synth", 1, 1, self.TOKENS)
        run = harness.run_scenario("rust", scen, 0, "conc-1")
        self.assertTrue(run["failed"])
        self.assertIn("rust", run["program"])
        self.assertTrue(run["error"])
        json.dumps(run)  # a results line


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]] + sys.argv[1:])


NGINX = next((p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(p, os.X_OK)), None)
RUST_TOML = ROOT / "bench/peers/rust/Cargo.toml"
RUST_PEER_TLS = ROOT / "bench/peers/rust/target/release/rust-peer-tls"


@unittest.skipUnless(os.access(CLI, os.X_OK), f"chimeraforge is not built ({CLI})")
@unittest.skipUnless(NGINX and shutil.which("openssl"),
                     "nginx or openssl is not installed (scripts/setup.sh installs both)")
class AgainstSynthServerOverTls(AgainstSynthServer):
    """--tls: the same runs through nginx over https, each program verifying nginx's
    certificate against the CA the harness made (--ca-file)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.front = compare.TlsFront(cls.tmp)
        cls.https = cls.front.add(cls.server.port)
        cls.front.start()
        cls.args.ca_file = cls.front.ca
        cls.args.rust_peer = str(RUST_PEER_TLS)  # the plain build has no TLS

    @classmethod
    def tearDownClass(cls):
        cls.front.stop()
        super().tearDownClass()

    def url(self):
        return self.https

    @unittest.skipUnless(os.access(RUST_PEER_TLS, os.X_OK)
                         and os.path.getmtime(RUST_PEER_TLS) >= os.path.getmtime(RUST_TOML),
                         f"the Rust peer is not built with TLS ({RUST_PEER_TLS}): "
                         f"bash scripts/setup-peers.sh")
    def test_rust_peer(self):
        self.run_program("rust")

    def test_the_urls_are_https(self):
        self.assertTrue(self.https.startswith("https://localhost:"))
        scen = compare.Scenario("t", "synth-test", "ollama", "synth", 1, 1, 1)
        for program in ("chimeraforge", "python", "rust"):
            argv = compare.program_argv(self.args, program, scen, self.https, self.tmp / "r")
            self.assertIn("--ca-file", argv)
            self.assertEqual(argv[argv.index("--ca-file") + 1], str(self.front.ca))

    # Startup and failure reporting do not depend on the transport: tested once, above.
    test_startup_chimeraforge = None
    test_startup_python = None
    test_startup_rust = None
    test_a_failing_program_is_reported = None
