"""gemfinder: find the best fine-tuned model in a model tree under a fixed query budget."""

import os

__version__ = "0.1.0"

# huggingface_hub's telemetry, when on, builds each client's User-Agent with an "AI agent"
# check that fetches {HF_ENDPOINT}/api/agent-harnesses once per process, blocking for up to 3 s
# (inside the event loop, for AsyncInferenceClient). A service next to an inference fleet must
# not call huggingface.co on its own, so it is off unless the user sets the variable. It is read
# when huggingface_hub is imported, hence here, before any module imports it.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
