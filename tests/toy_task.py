"""A small PassUntil task over a local JSONL file, for tests and benchmarks.

Rows are ``{"prompt": str, "target": str | [str, ...]}``; a sample passes when
it equals one of the targets exactly (``passuntil_exact_match``).
"""

from __future__ import annotations

import json
from pathlib import Path


def write_exact_match_task(root: Path, name: str, rows: list[dict], *, max_gen_toks: int,
                           until: str = "\\n", first_line: bool = False) -> Path:
    """Write ``root/data.jsonl`` and ``root/tasks/<name>.yaml``; return the task dir
    (for ``--include_path``). ``until`` is YAML-escaped text."""
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{name}.yaml").write_text(f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target if target is string else target[0]}}}}"
repeats: 1
generation_kwargs:
  until: ["{until}"]
  max_gen_toks: {max_gen_toks}
  do_sample: true
  temperature: 1.0
filter_list:
  - name: passuntil
    filter:
      - function: passuntil_exact_match
        first_line: {str(first_line).lower()}
metric_list:
  - metric: pu
    aggregation: mean
    higher_is_better: true
""")
    return tasks
