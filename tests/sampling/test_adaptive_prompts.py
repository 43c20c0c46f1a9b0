"""The adaptive runner keeps each document's prompt fixed across rounds and
does not evaluate the task's own metrics on a round's few samples."""

from __future__ import annotations

import json

from tests.scripted_lm import scripted_lm


def _fewshot_task(root, pass_at_10=True):
    rows = [{"q": f"q{i}", "a": f"a{i}"} for i in range(12)]
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "toy_fewshot.yaml").write_text(f"""task: toy_fewshot
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
fewshot_split: test
num_fewshot: 3
output_type: generate_until
doc_to_text: "Q: {{{{q}}}}\\nA:"
doc_to_target: " {{{{a}}}}"
repeats: 1
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: true
  temperature: 1.0
filter_list:
  - name: passuntil
    filter:
      - function: passuntil_exact_match
        target_field: a
metric_list:
  - metric: pu
    aggregation: mean
    higher_is_better: true
""" + ("""  - metric: pass_at_k
    aggregation: mean
    higher_is_better: true
    k: [1, 10]
""" if pass_at_10 else ""))
    return tasks


def test_fewshot_prompt_is_fixed_per_document_across_rounds(tmp_path):
    from lm_eval_ext.sampling.adaptive import StopRule
    from lm_eval_ext.sampling.runner import run_adaptive

    tasks = _fewshot_task(tmp_path)

    def answer(prompt, i):
        # documents q0..q3 pass on their 3rd sample; the rest never pass
        doc = prompt.rsplit("Q: ", 1)[1].split("\n")[0]
        return f" a{doc[1:]}" if doc in ("q0", "q1", "q2", "q3") and i >= 2 else " wrong"

    lm = scripted_lm(answer)
    # first=2 then growth: easy documents leave the pool after round 2, so
    # later rounds evaluate different subsets of documents; pass@10 is
    # configured but rounds draw 2-4 samples
    run_adaptive("toy_fewshot", lm, output_path=tmp_path / "out", include_path=tasks, progress=False,
                 rule=StopRule(r=1, cap=16, first=2), ks=(1,))
    by_doc: dict[str, set[str]] = {}
    for p in lm.prompts:
        by_doc.setdefault(p.rsplit("Q: ", 1)[1].split("\n")[0], set()).add(p)
    assert len(by_doc) == 12
    assert all(len(v) == 1 for v in by_doc.values()), {k: len(v) for k, v in by_doc.items() if len(v) > 1}
    # the demonstrations are real few-shot examples, not the document itself
    for doc, (prompt,) in by_doc.items():
        assert prompt.count("Q: ") == 4 and f"Q: {doc}\nA: a" not in prompt
    from lm_eval_ext.sampling.runner import state_path

    state = json.loads(state_path(tmp_path / "out", "toy_fewshot", lm).read_text())
    ks = {int(d): i["outcomes"] for d, i in state["instances"].items()}
    # the scripted passes arrive in sampling order (a round may draw past
    # the first pass)
    assert all(ks[d].startswith("001") for d in range(4)), ks
    assert all("1" not in ks[d] and len(ks[d]) == 16 for d in range(4, 12))


def test_without_pinning_lm_eval_would_change_the_prompt(tmp_path):
    """The reason for the pinning: plain lm-eval draws demonstrations in
    document order, so a subset gets different ones."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = _fewshot_task(tmp_path, pass_at_10=False)
    prompts = {}
    for ids in ([0, 1, 2, 3, 4, 5], [5]):
        lm = scripted_lm(lambda p, i: " x")
        tm = TaskManager(include_path=str(tasks), include_defaults=False)
        lm_eval.simple_evaluate(model=lm, tasks=["toy_fewshot"], task_manager=tm, samples={"toy_fewshot": ids},
                                fewshot_random_seed=1234, bootstrap_iters=0)
        prompts[len(ids)] = [p for p in lm.prompts if p.endswith("Q: q5\nA:")][0]
    assert prompts[6] != prompts[1]
