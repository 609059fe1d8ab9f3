"""SIGKILL in the middle of sequencing loses no acknowledged event and leaves a consistent tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datavalley.exchange import Exchange
from datavalley.home import init_home, settings_for
from datavalley.ledger import log, merkle
from datavalley.ledger.verify import verify_bundle, verify_receipt

CHILD = r"""
import json, sys
from datavalley.home import open_exchange
from datavalley.exchange import Context
from datavalley.identity.model import Principal

ex = open_exchange(sys.argv[1], sequence_batch=500)
def touch(ctx, n):
    for i in range(n):
        ctx.emit("test.bulk", [], {"i": i})
    return n
round_ = 0
while True:
    round_ += 1
    # A bulk of events committed to the outbox, then one acknowledged action whose receipt needs them all
    # sequenced first: the kill lands in sequencing most of the time.
    ex.run(Principal.system(), touch, 3000, render=lambda v: {"n": v})
    out = ex.run(Principal.system(), touch, 1, render=lambda v: {"n": v})
    print(json.dumps(out.receipts[0]), flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_sequencing(tmp_path: Path) -> None:
    """Kill -9 the sequencer mid-flight; after restart every receipt still verifies against the log."""
    home = tmp_path / "home"
    init_home(home)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    receipts = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(receipts) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        receipts.append(json.loads(line))
    time.sleep(0.15)  # into the next round's sequencing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert len(receipts) >= 3, "the child never acknowledged anything"

    ex = Exchange.open(settings_for(home))
    try:
        with ex.session(write=False) as s:
            head_before = log.head(s)
            entries = log.entries(s, 0, head_before.size)
        # The stored head is exactly the tree of the stored entries: no half-written batch.
        assert head_before.root_hash == merkle.root_hash(entries)
        ex.ledger.sequence_pending()
        cp = ex.ledger.publish()  # refuses if inconsistent with the last checkpoint signed before the kill
        for r in receipts:
            _, entry, index = verify_receipt(r, ex.ledger.verifier)
            with ex.session(write=False) as s:
                assert log.entries(s, index, index + 1)[0] == entry
        from datavalley.exchange import Context
        from datavalley.identity.model import Principal
        from datavalley.ledger.service import export_bundle

        with ex.session(write=False) as s:
            bundle = export_bundle(
                Context(s, Principal.system(), ex.now(), ex.settings),
                exchange_vkey=ex.ledger.verifier.verifier_key_string(),
            )
        report = verify_bundle(bundle, receipts=receipts)
        assert report.ok, report.findings
        assert cp.size == len(bundle["entries"]) >= head_before.size
    finally:
        ex.close()
