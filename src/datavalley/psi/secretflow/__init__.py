"""SecretFlow's PSI engine as a governed datavalley backend (docs/PSI.md section 9).

* :mod:`.runtime` — the managed environment (``spu`` cannot share ours) and one party's subprocess;
* :mod:`.worker` — the script that runs in it (standard library + ``spu`` only);
* :mod:`.tls` — per-session certificates, authenticated by the nodes' signed messages;
* :mod:`.session` — the responder and the initiator: contract, data, normalisation, metering;
* :mod:`.routes` — the signed route and the initiator's channel.
"""

from __future__ import annotations

from datavalley.psi.secretflow.routes import run_secretflow_psi, secretflow_router
from datavalley.psi.secretflow.runtime import SecretFlowFailed, locate, setup
from datavalley.psi.secretflow.session import EngineSession, SecretFlowResponder, engine_key

__all__ = [
    "EngineSession",
    "SecretFlowFailed",
    "SecretFlowResponder",
    "engine_key",
    "locate",
    "run_secretflow_psi",
    "secretflow_router",
    "setup",
]
