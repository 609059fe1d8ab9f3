"""`datavalley demo` runs the whole scenario and its ledger verifies."""

from __future__ import annotations

import io
import re
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
    assert (summary["frozen_status"], summary["refused_status"], summary["refused_reason"]) == (
        "frozen",
        409,
        "resource_frozen",
    )
    assert summary["charged_while_frozen"] == (0, 0) and summary["status_after"] == "registered"
    assert summary["delivered_rows"] > 0 and summary["traced_contract"] == summary["delivery_contract"]
    assert summary["crossborder_aggregate_pathway"] == "non_personal" and summary["crossborder_refused"]
    assert summary["crossborder_delivery_pathway"] == "standard_contract"
    assert summary["crossborder_counted_upper_bound"] >= 110_000  # never below the true count
    text = out.getvalue()
    assert "all verified" in text and "not a valid unified social credit code" in text
    steps = [int(m) for m in re.findall(r"^(\d+)\. ", text, re.M)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 14  # numbered in the order told
    assert '"@context"' in text and "odrl:" not in text.split('"@context"')[0][-5:]  # ODRL printed as JSON
    files = {Path(f).name: Path(f) for f in summary["files"]}  # type: ignore[attr-defined]
    for png in ("budget.png", "settlement.png"):
        assert files[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[png].stat().st_size > 10_000
        assert str(files[png]) in text.replace("\n", "")  # printed as paths at the end
    from pypdf import PdfReader

    # (pypdf reads fpdf2's ToUnicode map of the embedded CJK font with a NUL before each character)
    pdf = "".join(page.extract_text() for page in PdfReader(files["invoice.pdf"]).pages).replace("\x00", "")
    assert (
        "贵州黔通智运物流有限公司" in pdf and "贵州黔安财产保险股份有限公司" in pdf
    )  # both parties, in Chinese
    assert re.search(r"USCC\s+91520100MA6DKXXXX\w", pdf) and re.search(r"USCC\s+91520100MA6DN0003\w", pdf)
