"""python -m polyhead.report sweep_id=<id> | experiment=<name> [compare="A vs B"] [out=<dir>] ..."""

from polyhead.report import main

try:
    main()
except ValueError as error:  # no runs, a bad comparison: a message, not a traceback
    raise SystemExit(f"python -m polyhead.report: {error}") from None
