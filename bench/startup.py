"""CLI start-up: `datavalley --help` and a `whoami` round trip, against the interpreter's own start-up.

    .venv/bin/python bench/startup.py --quick     # 5 runs of each (well under a minute)
    .venv/bin/python bench/startup.py             # 20 runs of each

Each figure is the median wall time of fresh processes of the installed console script (what a user
waits for). The baseline is `python -c pass` (the floor no CLI can beat) and `python -c "import typer"`
(the framework alone). The round trip runs against a real `datavalley serve` on loopback (`--server`);
the local variant (`--home`, API in-process) is reported too. Targets (issue 11): --help <= 0.3 s,
whoami <= 0.6 s. Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SCRIPT = str(BIN / "datavalley")


def timed(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t)
    return {"median_s": round(statistics.median(samples), 3), "min_s": round(min(samples), 3)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 runs of each instead of 20")
    args = ap.parse_args()
    runs = 5 if args.quick else 20
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAVALLEY_")}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        token = subprocess.run(
            [SCRIPT, "init", "--home", str(home), "--get", "token"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = free_port()
        server = subprocess.Popen(
            [SCRIPT, "--home", str(home), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            subprocess.run(
                [SCRIPT, "--server", url, "health", "--wait", "60"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            results = {
                "python_floor": timed([sys.executable, "-c", "pass"], env, runs),
                "import_typer": timed([sys.executable, "-c", "import typer"], env, runs),
                "help": timed([SCRIPT, "--help"], env, runs),
                "whoami_server": timed([SCRIPT, "--server", url, "--token", token, "whoami"], env, runs),
                "whoami_local": timed([SCRIPT, "--home", str(home), "--token", token, "whoami"], env, runs),
            }
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    out = {
        "bench": "startup",
        "runs": runs,
        **{k: v["median_s"] for k, v in results.items()},
        "min": {k: v["min_s"] for k, v in results.items()},
        "targets": {"help": 0.3, "whoami_server": 0.6},
        "help_over_python_floor_s": round(
            results["help"]["median_s"] - results["python_floor"]["median_s"], 3
        ),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
