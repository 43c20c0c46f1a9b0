"""What every command of the project does the same way, as a researcher using
lm-eval expects it: flags (:mod:`.flags`: lm-eval's snake_case, comma lists,
defaults shown, renamed flags as errors), terminal output (:mod:`.console`:
progress bars quiet off a terminal, upstream warnings once), files
(:mod:`.files`: atomic writes with the user's umask) and JSONL input
(:mod:`.jsonl`: errors naming file and line).

A leaf: it imports nothing else of the project, so both ``lm_eval_ext`` and
``analysis`` build on it.
"""
