"""Run a study whole, or publish and check its results page (issue 13: conf/study/sharing.yaml).

    python scripts/study.py run paths.corpora=../shared/data          # every run, the report, docs/study.md
    python scripts/study.py run --dry-run paths.corpora=../shared/data  # print the train.py multiruns only
    python scripts/study.py run --jobs 2 paths.corpora=../shared/data   # two models training at once
    python scripts/study.py run --id sharing-20250101-090000 --resume ...  # run only what has not FINISHED
    python scripts/study.py publish --id <study id> [overrides]        # report and page again from MLflow
    python scripts/study.py publish --id <study id> --partial ...      # the same for a study still running
    python scripts/study.py check                                      # docs/study.md against MLflow

Overrides after the options go to every `python train.py -m` (and to the composed config the plan is read
from), e.g. study.seeds=[1,2] study.all_seeds=[] paths.root_dir=/elsewhere.
"""

import argparse
import shlex
import signal
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from polyhead.errors import UserError
from polyhead.study.page import check, check_owner, publish
from polyhead.study.run import compose_study, page_meta, report, run_study
from polyhead.tracking import mlflow_config

PROJECT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["run", "publish", "check"])
    parser.add_argument("--study", default="sharing", help="conf/study/<name>.yaml (default: sharing)")
    parser.add_argument("--id", help="study id (run: default <study>-<date>-<time>; publish: required)")
    parser.add_argument("--resume", action="store_true", help="run: skip the runs the study id FINISHED")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run: models training at once (default 1). Over 1, each seed of a cell is a process of its own, "
        "started as soon as one ends, with cores/jobs threads",
    )
    parser.add_argument("--dry-run", action="store_true", help="run: print the multiruns, run nothing")
    parser.add_argument(
        "--partial", action="store_true", help="publish: a study still running (arms without runs are named)"
    )
    parser.add_argument(
        "--page", default=str(PROJECT / "docs" / "study.md"), help="results page ('' for none)"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="run/publish: the page may hold another study's results (make study: reproduce, page and all)",
    )
    parser.add_argument("--tracking-uri", help="check: the MLflow store (default: the one study.json names)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides for every run")
    args = parser.parse_intermixed_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.action == "check":
        problems = check(Path(args.page), args.tracking_uri)
        print("\n".join(problems) or f"{args.page} matches its study's runs in MLflow")
        return 1 if problems else 0
    if args.action == "publish":
        if not args.id:
            parser.error("publish needs --id <study id>")
        if not args.replace:
            check_owner(Path(args.page), args.id)  # before the report run is logged
        cfg = compose_study(PROJECT, args.study, args.overrides)
        uri = mlflow_config(cfg).tracking_uri
        out = Path(cfg.paths.root_dir) / "outputs" / "reports" / args.id
        run_id = report(cfg, MlflowClient(uri), args.id, out, {}, partial=args.partial)
        print(f"report: {out} (MLflow run {run_id})")
        print(f"page: {publish(MlflowClient(uri), page_meta(cfg, args.id, uri), Path(args.page))}")
        return 0
    options = vars(args) | {"command": shlex.join(["python", "scripts/study.py", *sys.argv[1:]])}
    return run_study(PROJECT, args.study, args.overrides, options)


if __name__ == "__main__":
    # A SIGTERM ends the running train.py too (subprocess.run kills its child on the way out).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except (ValueError, UserError) as error:  # no runs, a bad arm or page: a message, not a traceback
        sys.exit(f"scripts/study.py: {error}")
