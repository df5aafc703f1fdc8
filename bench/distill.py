"""Teacher and students side by side, measured in one run on one machine (issue 11, item 4): words/s, model
size on disk, peak RSS and every test metric by spaCy's scorer, with each one's fraction of the teacher's.

Each pipeline runs in its own process, in alternating rounds (`--rounds`; each keeps its median round), so
peak RSS (VmHWM of that child, read after loading and the timed passes) is per model. Speed: `nlp.pipe`
over the first `--texts` gold test texts, median of `--repeats` passes after a warm-up pass. Accuracy: each
component's own spaCy score on the whole gold test set, predicted from its gold tokens, under polyhead's
metric names. The gold set is EWT test joined with UNER test as `experiment=ewt` reads it (`--corpora`), or
a DocBin (`--docbin`). The child imports nothing of polyhead's itself; but in a venv where polyhead is
installed spaCy imports it (and torch) on every load, through its factory entry points. `--plain-python`
names the Python of a venv with spaCy alone: pipelines made only of spaCy's own components run there, as
their users run them (the `python` and `imported` columns say where each ran and what it pulled in).
The first pipeline is the teacher unless `--teacher` names another.

    python bench/distill.py teacher=outputs/runs/<run>/spacy_pipeline layers=<student>/spacy_pipeline \\
        cnn=<run>/spacy_cnn/model-best cnn_gold=<run>/spacy_cnn/model-best --corpora ../shared/data \\
        --plain-python <spacy-only venv>/bin/python
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from isolated import run_rounds

METRICS = ("tagger_acc", "ner_f1", "ner_precision", "ner_recall", "textcat_macro_f1", "parser_las")
HEADERS = dict(zip(METRICS, ("UPOS", "ent F1", "ent P", "ent R", "genre F", "LAS")))
WATCHED = {"polyhead", "torch", "transformers"}  # imports that a plain spaCy pipeline should not need


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image, so it starts afresh
    at exec; ru_maxrss survives exec (getrusage(2)) and would report at least the forking parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: str, args) -> dict:
    """One pipeline in this process, importing nothing of polyhead's itself (so it runs in a plain spaCy
    venv too): speed, peak RSS after loading and timing, then spaCy's scores on the gold Docs' tokens."""
    import spacy
    from inference import gold_scores, timed
    from spacy.tokens import DocBin

    names = spacy.util.load_config(Path(path) / "config.cfg")["nlp"]["pipeline"]
    config = {"components": {"encoder": {"precision": args.precision}}} if "encoder" in names else {}
    nlp = spacy.load(path, config=config)
    gold = list(DocBin().from_disk(args.docbin).get_docs(nlp.vocab))
    texts = [doc.text for doc in gold[: args.texts]]
    times = timed(lambda: list(nlp.pipe(texts, batch_size=args.pipe_batch)), args.repeats)
    words = sum(len(nlp.make_doc(t)) for t in texts)
    result = {
        "pipeline": nlp.pipe_names,
        "words": words,
        "seconds": times,
        "words_per_sec": words / statistics.median(times),
        "peak_rss_mb": peak_rss_mb(),
        "python": sys.executable,
        "imported": sorted({m.split(".")[0] for m in sys.modules} & WATCHED),
        "runs_as": nlp.get_pipe("encoder").resolved_precision if "encoder" in names else "fp32",
    }
    scores = gold_scores(nlp, gold, args.pipe_batch)
    result["spacy_scores"] = {k: v for k, v in scores.items() if isinstance(v, float) or k == "ents_per_type"}
    return result


def plain_spacy(path: str) -> bool:
    """Only spaCy's own components: no factory a package registers through spaCy's entry points."""
    from importlib.metadata import entry_points

    import spacy

    registered = {ep.name for ep in entry_points(group="spacy_factories")}
    components = spacy.util.load_config(Path(path) / "config.cfg")["components"].values()
    return not any(c.get("factory") in registered for c in components)


def disk_mb(path: str) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1024**2


def compare(results: dict[str, dict], teacher: str) -> dict[str, dict]:
    """Each pipeline's speed ratio and every metric's fraction of the teacher's (None where one lacks it)."""
    base = results[teacher]
    for r in results.values():
        r["x_teacher_words_per_sec"] = r["words_per_sec"] / base["words_per_sec"]
        r["fraction_of_teacher"] = {
            k: v / base["metrics"][k] if base["metrics"].get(k) else None for k, v in r["metrics"].items()
        }
    return results


def table(results: dict[str, dict], teacher: str, cpu: str) -> str:
    def metric(r, key):
        value, frac = r["metrics"].get(key), r["fraction_of_teacher"].get(key)
        return f"{100 * value:6.2f} {100 * frac:5.1f}%" if value is not None and frac else f"{'-':>13}"

    lines = [
        f"CPU: {cpu}    teacher: {teacher}    metric columns: test score and its % of the teacher's",
        f"{'pipeline':<14} {'runs as':>8} {'words/s':>8} {'x teach':>7} {'disk MB':>8} {'RSS MB':>7} "
        f"{'python':>8} {'imported':<28} " + " ".join(f"{HEADERS[k]:>13}" for k in METRICS),
    ]
    for name, r in results.items():
        imported = ",".join(r["imported"]) or "-"
        lines.append(
            f"{name:<14} {r['runs_as']:>8} {r['words_per_sec']:>8.0f} {r['x_teacher_words_per_sec']:>7.2f} "
            f"{r['disk_mb']:>8.1f} {r['peak_rss_mb']:>7.0f} {r['venv']:>8} {imported:<28} "
            + " ".join(metric(r, k) for k in METRICS)
        )
    return "\n".join(lines)


def parse_pipelines(pairs: list[str]) -> dict[str, str]:
    pipelines = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not (Path(path) / "config.cfg").is_file():
            raise SystemExit(f"error: {pair!r}: give NAME=PATH of a spaCy pipeline directory")
        pipelines[name] = path
    return pipelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="+", help="NAME=PATH of a spaCy pipeline, the teacher first")
    parser.add_argument("--teacher", help="the NAME the others are compared with (default: the first)")
    parser.add_argument("--corpora", default="../shared/data", help="EWT + UNER gold test (experiment=ewt)")
    parser.add_argument("--docbin", help="a gold test DocBin instead of --corpora")
    parser.add_argument("--plain-python", help="Python of a spaCy-only venv for spaCy-only pipelines")
    parser.add_argument("--texts", type=int, default=600, help="gold test texts timed (all are scored)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pipe-batch", type=int, default=256, help="nlp.pipe batch size")
    parser.add_argument("--precision", default="auto", help="how polyhead pipelines' encoder runs")
    parser.add_argument("--out", default="bench/results/distill.json")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    pipelines = parse_pipelines(args.pipelines)
    if args.only:
        print(json.dumps(measure(pipelines[args.only], args)))
        return
    teacher = args.teacher or next(iter(pipelines))
    plain = {n: args.plain_python for n, p in pipelines.items() if args.plain_python and plain_spacy(p)}
    with tempfile.TemporaryDirectory() as tmp:
        docbin = args.docbin or write_gold(args.corpora, Path(tmp) / "test.spacy")
        options = {"--docbin": docbin, "--texts": args.texts, "--repeats": args.repeats}
        options |= {"--pipe-batch": args.pipe_batch, "--precision": args.precision}
        forwarded = [*args.pipelines, *[str(x) for item in options.items() for x in item]]
        results = run_rounds(__file__, forwarded, list(pipelines), args.rounds, plain)
    for name, path in pipelines.items():
        venv = "plain" if name in plain else "this"
        results[name] |= {"path": path, "disk_mb": disk_mb(path), "venv": venv}
    report(compare(with_metrics(results), teacher), teacher, args)


def with_metrics(results: dict[str, dict]) -> dict[str, dict]:
    """spaCy's score keys as polyhead's metric names (children in a plain venv cannot import polyhead)."""
    from polyhead.distill.spacy_cnn import polyhead_names
    from polyhead.models.heads.registry import HEADS

    # the bench's pipelines learn EWT's tasks, named after their head kinds (token.pos_, doc.ents, doc.cats,
    # token.head: LAS where a pipeline parses)
    tasks = ("tagger", "ner", "textcat", "parser")
    writers = {task: (HEADS[task], dict(HEADS[task].spacy_options)) for task in tasks}
    for r in results.values():
        r["metrics"] = polyhead_names(r["spacy_scores"], writers)
    return results


def write_gold(corpora: str, path: Path) -> str:
    from inference import gold_examples

    gold_examples(corpora)[1].to_disk(path)
    return str(path)


def report(results: dict[str, dict], teacher: str, args) -> None:
    from polyhead.hardware import detect

    cpu = detect().describe()
    print(table(results, teacher, cpu))
    settings = {k: getattr(args, k) for k in ("texts", "repeats", "rounds", "pipe_batch", "precision")}
    payload = {"teacher": teacher, "hardware": detect().tags(), "cpu": cpu, "settings": settings}
    payload |= {"gold": args.docbin or f"EWT test + UNER test from {args.corpora}", "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
