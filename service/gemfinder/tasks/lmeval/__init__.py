"""lm-evaluation-harness tasks as gemfinder query sets (the optional `lm-eval` extra).

`build` turns an lm-eval task (its YAML, loaded by lm_eval itself, data from local files) into
query-set records of task kind `lm_eval`; `task.LmEvalTask` builds prompts for and grades those
records with lm_eval's own filters and metrics. Only `build` and `loading` need the 9 s task
index; grading imports lm_eval's filter and metric modules alone.
"""

TASK_KIND = "lm_eval"
LM_EVAL_VERSION = "0.4.13"  # the version the records' prompts and grading were checked against

__all__ = ["LM_EVAL_VERSION", "TASK_KIND"]
