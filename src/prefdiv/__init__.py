"""prefdiv: how preference-optimisation losses trade reward for diversity (IMDB, DPO family)."""

import os

# The demo is fully offline: never reach the Hugging Face Hub, never send TRL/HF telemetry.
# Set before transformers/trl are imported by any prefdiv module; a user's explicit value wins.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
