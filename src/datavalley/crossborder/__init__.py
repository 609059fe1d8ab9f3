"""Cross-border data flow: China's 2024 rules, PIPL and GDPR Chapter V as tested code (docs/CROSS_BORDER.md).

* :mod:`~datavalley.crossborder.rules` — the versioned rule data (``data/rules-*.json``) as typed values;
* :mod:`~datavalley.crossborder.engine` — the pure decision function: a proposed transfer → pathway,
  deciding articles, what must be on file;
* :mod:`~datavalley.crossborder.sketch` — HLL sketches of salted identifier hashes (Apache DataSketches),
  computed on the node, merged per exporter and calendar year on the exchange;
* :mod:`~datavalley.crossborder.service` — facts (jurisdictions, node locations), records (approvals,
  filings, consent), the regulator's register;
* :mod:`~datavalley.crossborder.enforce` — :func:`check_transfer`, the one hook every place data moves
  calls;
* :mod:`~datavalley.crossborder.documents` — the PIPIA report and the standard-contract filing pack.
"""
