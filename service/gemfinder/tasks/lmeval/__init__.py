"""lm-evaluation-harness tasks as gemfinder query sets (the optional `lm-eval` extra).

`build` turns an lm-eval task (its YAML, loaded by lm_eval itself, data from local files) into
query-set records of task kind `lm_eval`; `task.LmEvalTask` builds prompts for and grades those
records with lm_eval's own filters and metrics. `index` caches lm-eval's task index on disk
(its walk takes 9-35 s), `loading` finds and loads a task through it, `catalog` holds the tasks a
server's operator registered for requests to name. Grading imports lm_eval's filter and metric
modules alone.
"""

TASK_KIND = "lm_eval"
LM_EVAL_VERSION = "0.4.13"  # the version the records' prompts and grading were checked against

__all__ = ["LM_EVAL_VERSION", "TASK_KIND"]
