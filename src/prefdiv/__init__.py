"""prefdiv: how preference-optimisation losses trade reward for diversity (IMDB, DPO family)."""

import os

# Never send TRL/HF telemetry. Set before transformers/trl are imported by any prefdiv module; a
# user's explicit value wins. (The Hub itself stays reachable: paper scale downloads from it. The
# demo names no Hub id, so it never contacts it.)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
