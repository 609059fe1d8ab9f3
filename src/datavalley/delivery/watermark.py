"""Leak tracing: a keyed, recipient-specific watermark in declared numeric columns, and its detector.

Scheme (docs/DELIVERY.md §Watermark). The provider declares, per product, numeric columns that tolerate a
change of one unit in a given decimal place (``terms.delivery.watermark.columns``: column → decimals d).
Each recipient r of contract c has, per column, a key K = HMAC(node secret, c | r | column). A delivered
value v becomes: q = round(v·10^d), pair p = ⌊q/2⌋, q' = 2p + b(K, p) with b the low bit of
SHA-256(K ":" p); so |v' − v| ≤ 10^-d and every value of the copy is "valid" under K.

Detection needs no row order, no row IDs and no other column: for each declared column present in a
suspect file, take the distinct pairs p (up to :data:`MAX_PAIRS` per column) and count those whose observed
low bit equals b(K, p). Under a key that did not mark the file, each distinct pair matches with
probability ½ independently (SHA-256 as a PRF), so with n pairs and m matches the chance that an innocent
recipient scores ≥ m is the binomial tail P[Bin(n, ½) ≥ m]; over N candidates the false-attribution
probability is at most N·P[Bin(n, ½) ≥ m] (union bound). A recipient is named only when that bound is
≤ :data:`ALPHA` and at least :data:`MIN_MATCH` of its pairs match.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from pathlib import Path

from datavalley.errors import InvalidInput

ALPHA = 1e-6
MIN_MATCH = 0.9
MAX_PAIRS = 8192


def column_key(secret: bytes, contract_id: str, recipient_id: str, column: str) -> str:
    """The watermark key of one recipient for one column (hex)."""
    msg = f"wm|{contract_id}|{recipient_id}|{column}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:32]


def expected_bit(key: str, pair: int) -> int:
    """b(K, p): must equal the SQL in :func:`datavalley.delivery.policy.watermark_sql`."""
    return int(hashlib.sha256(f"{key}:{pair}".encode()).hexdigest()[:2], 16) & 1


def _log_upper(n: int, m: int) -> float:
    """ln P[Bin(n, ½) ≥ m] for m > n/2: the terms only shrink, so sum them from the first."""
    log_first = math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1) - n * math.log(2)
    total, term = 1.0, 1.0
    for k in range(m, n):
        term *= (n - k) / (k + 1)
        total += term
        if term < 1e-17 * total:
            break
    return min(0.0, log_first + math.log(total))


def _upper(n: int, m: int) -> float:
    return math.exp(_log_upper(n, m))


def log10_tail(n: int, m: int) -> float:
    """log10 P[Bin(n, ½) ≥ m] — readable where the probability itself underflows."""
    if 2 * m > n and m <= n:
        return _log_upper(n, m) / math.log(10)
    p = binomial_tail(n, m)
    return math.log10(p) if p > 0 else -1e9


def binomial_tail(n: int, m: int) -> float:
    """P[Bin(n, ½) ≥ m] (log-space terms; exact to floating-point precision)."""
    if m <= 0:
        return 1.0
    if m > n:
        return 0.0
    if 2 * m > n:
        return _upper(n, m)
    return max(0.0, 1.0 - _upper(n, n - m + 1))  # symmetry of Bin(n, ½)


@dataclass(frozen=True)
class Candidate:
    contract_id: str
    recipient_id: str
    columns: tuple[tuple[str, int], ...]  # declared (column, decimals)
    delivered: bool


@dataclass(frozen=True)
class Score:
    contract_id: str
    recipient_id: str
    pairs: int
    matches: int
    false_attribution: float  # union bound over all candidates
    false_attribution_log10: float  # the same bound as log10 (it underflows a float for large files)
    attributed: bool
    delivered: bool


@dataclass(frozen=True)
class TraceReport:
    rows: int
    columns: tuple[str, ...]
    candidates: int
    attributed: Score | None
    scores: tuple[Score, ...]
    alpha: float


def _read_pairs(path: Path, columns: dict[str, int]) -> tuple[int, dict[str, dict[int, set[int]]]]:
    """Rows in the suspect file and, per declared column present, pair → observed low bits."""
    import duckdb

    from datavalley.delivery.policy import lit, qi

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        reader = f"read_parquet({lit(str(path))})"
    elif suffix in (".csv", ".txt", ".tsv"):
        reader = f"read_csv({lit(str(path))}, header = true, all_varchar = true)"
    elif suffix in (".jsonl", ".ndjson", ".json"):
        reader = f"read_json({lit(str(path))}, format = 'newline_delimited')"
    else:
        raise InvalidInput(f"cannot trace {path.name}: use a .csv, .parquet or .jsonl file", field="file")
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    try:
        try:
            con.execute(f"CREATE VIEW suspect AS SELECT * FROM {reader}")
            present = {str(r[0]) for r in con.execute("DESCRIBE suspect").fetchall()}
            rows = int(con.execute("SELECT count(*) FROM suspect").fetchone()[0])  # type: ignore[index]
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise InvalidInput(f"cannot read {path.name}: {first}", field="file") from None
        out: dict[str, dict[int, set[int]]] = {}
        for col, dec in sorted(columns.items()):
            if col not in present:
                continue
            q = f"CAST(round(TRY_CAST({qi(col)} AS DOUBLE) * {10**dec}) AS BIGINT)"
            found = con.execute(
                f"SELECT DISTINCT {q} AS q FROM suspect WHERE TRY_CAST({qi(col)} AS DOUBLE) IS NOT NULL "
                f"ORDER BY hash(q) LIMIT {2 * MAX_PAIRS}"
            ).fetchall()
            pairs: dict[int, set[int]] = {}
            for (value,) in found:
                pairs.setdefault(int(value) >> 1, set()).add(int(value) & 1)
            if pairs:
                out[col] = dict(list(pairs.items())[:MAX_PAIRS])
        return rows, out
    finally:
        con.close()


def trace(path: Path, secret: bytes, candidates: list[Candidate], *, alpha: float = ALPHA) -> TraceReport:
    """Score every candidate recipient against the file at ``path``; name one only beyond doubt."""
    declared: dict[str, int] = {}
    for cand in candidates:
        for col, dec in cand.columns:
            declared.setdefault(col, dec)
    rows, observed = _read_pairs(path, declared)
    scores = []
    n_candidates = max(1, len(candidates))
    for cand in candidates:
        n = m = 0
        for col, dec in cand.columns:
            pairs = observed.get(col)
            if pairs is None or declared[col] != dec:
                continue
            key = column_key(secret, cand.contract_id, cand.recipient_id, col)
            for pair, bits in pairs.items():
                n += 1
                if bits == {expected_bit(key, pair)}:
                    m += 1
        bound = min(1.0, n_candidates * binomial_tail(n, m)) if n else 1.0
        log_bound = min(0.0, math.log10(n_candidates) + log10_tail(n, m)) if n else 0.0
        ok = n > 0 and m >= MIN_MATCH * n and bound <= alpha
        scores.append(Score(cand.contract_id, cand.recipient_id, n, m, bound, log_bound, ok, cand.delivered))
    scores.sort(key=lambda s: (s.false_attribution_log10, -s.matches))
    named = next((s for s in scores if s.attributed), None)
    return TraceReport(rows, tuple(sorted(observed)), len(candidates), named, tuple(scores), alpha)
