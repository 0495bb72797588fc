"""``napari-bavis``: the widgets' analysis over one scan or a cohort, with no display.

Every subcommand calls the core (``pipeline``, ``export``, ``cohort``; no second implementation); one
module per command group: ``analyze``, ``compare`` (and ``demo``), ``models`` (and ``train``), ``bids``;
``parser`` holds the grammar. Exit codes: 0 all good, 1 at least one scan failed, 2 usage errors (bad
arguments, unknown model or device, an unreadable covariates table, an output folder that would
collide with an input), 130 when interrupted. Each failing scan gets exactly one ``<path>: <reason>``
line on stderr.
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..cohort.covariates import Covariates, covariates_for, read_covariates  # noqa: F401  (the CLI's names before the split)
from ..cohort.jobs import Job, Outcome, run_job  # noqa: F401
from ..cohort.results import REPORT_KEYS, RESULT_COLUMNS, finished_report, result_row, write_results  # noqa: F401
from ..cohort.scans import find_scans, output_names, parse_shard, shard_indices  # noqa: F401
from ..outputs import os_error_text
from ._common import (  # noqa: F401
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, _err, explain_options, failure_line,
)
from .compare import demo_sample  # noqa: F401
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    try:
        return args.func(args)
    except UsageError as err:
        parser.exit(EXIT_USAGE, f"napari-bavis: error: {err}\n")
    except KeyboardInterrupt:
        _err("napari-bavis: interrupted")
        return EXIT_INTERRUPTED
    except OSError as err:  # e.g. the results table on a full disk: one line, not a traceback
        _err(f"napari-bavis: {os_error_text(err)}")
        return EXIT_FAILED


def run() -> None:
    """The ``napari-bavis`` command: ``main()``, then a fast exit.

    Why not ``sys.exit(main())``: tearing down the interpreter with torch loaded takes about 0.8 s
    on two cores (module and object finalisation), a tenth of a real scan's whole analysis. Every
    file is closed and every worker stopped by the time ``main`` returns; the atexit handlers (the
    worker runner's ``stop_all``, logging's flush) still run, then the process ends at once.
    """
    import atexit
    import os
    import traceback

    code = EXIT_FAILED
    try:
        code = main()
    except SystemExit as stop:  # argparse's usage errors and --help
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_USAGE)
        if stop.code is not None and not isinstance(stop.code, int):
            _err(str(stop.code))
    except KeyboardInterrupt:  # outside main's own handler (e.g. while its imports run)
        _err("napari-bavis: interrupted")
        code = EXIT_INTERRUPTED
    except BaseException:  # a bug: its traceback is shown, as Python would before exiting with 1
        traceback.print_exc()
        code = EXIT_FAILED
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: nothing left to say
                pass
        os._exit(code if code is not None else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    run()
