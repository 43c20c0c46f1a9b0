"""Reading what the analyses fit: lm-eval result directories and tidy tables.

- :mod:`analysis.ingest.results`: v0.4 and v0.3 result files, PassUntil samples, manifests.
- :mod:`analysis.ingest.tables`: tidy tables (CSV, parquet, JSONL) and the scale variable
  (``--x N | compute | tokens | COLUMN``).
"""

from .results import (  # noqa: F401
    attach_sizes,
    detect_format,
    model_name,
    parse_model_args,
    read_instances,
    read_manifest,
    read_results,
    read_results_file,
    read_samples_file,
    tidy_table,
)
from .tables import (  # noqa: F401
    COLUMNS,
    FORMATS,
    TABLE_SUFFIXES,
    TableWarning,
    instance_pu,
    is_table_file,
    load,
    read_table,
    select_metric,
    with_x,
)
