"""`datavalley demo` runs the whole scenario and its ledger verifies."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from datavalley.demo import run_demo


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """Onboarding, registration, certificates, witness cosigning and offline verification all succeed."""
    out = io.StringIO()
    summary = run_demo(tmp_path / "home", console=Console(file=out, width=120))
    assert summary["verified"] is True and summary["participants"] == 7
    assert summary["resources"] == 3 and summary["certificate_ok"] is True
    assert summary["contract_state"] == "FINALIZED" and summary["money_ok"] is True
    assert summary["uses"] == summary["queries_answered"] - 1  # one answer came from the cache, free
    assert summary["released"] == 800 * summary["uses"] and summary["queries_refused"] == 1
    assert summary["psi_cardinality"] == summary["psi_expected"] > 0 and summary["psi_uses"] == 2
    assert summary["compute_pool_west"] is True and summary["compute_amount"] >= 1  # docs/COMPUTE.md
    assert summary["cosignatures"] == 2 and summary["entries"] == summary["checkpoint_size"]
    text = out.getvalue()
    assert "all verified" in text and "not a valid unified social credit code" in text
