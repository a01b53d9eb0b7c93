"""bench --pin-servers: the servers' threads on CPU 0, the load generator on the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# A child process pins a sleeping server (with a second thread) and then reports, so this test
# process keeps its own affinity.
SCRIPT = """
import json, os, subprocess, sys
from bench.pinning import pin_servers
server = subprocess.Popen([sys.executable, "-c",
    "import threading, time; threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); "
    "print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
try:
    assert server.stdout.readline().strip() == "up"
    bound = pin_servers([server.pid])
    threads = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{server.pid}/task")]
    print(json.dumps({"bound": bound, "threads": threads, "me": sorted(os.sched_getaffinity(0))}))
finally:
    server.kill()
    server.wait(10)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
def test_pin_servers_binds_every_server_thread_to_cpu_0_and_the_harness_elsewhere() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bound"]["servers"] == [0]
    assert len(result["threads"]) >= 2 and all(cpus == [0] for cpus in result["threads"])
    assert 0 not in result["me"] and result["me"] == result["bound"]["load_generator"]
