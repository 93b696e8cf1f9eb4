"""Prompt code of the unit_conversion_mc task (lm-eval imports it for `!function`)."""


def doc_to_text(doc: dict) -> str:
    """The question with the kind of quantity up front, e.g. "[volume] Question: ...\nAnswer:"."""
    return f"[{doc['quantity']}] Question: {doc['question']}\nAnswer:"
