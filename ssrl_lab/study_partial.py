"""The study so far: its table, power and claims from the runs that have finished, clearly marked
as interim.

A study on the 200-speaker set takes longer than one working session, and it resumes from its
archive; between sessions a reader still wants to see where it stands. :func:`report_partial`
reads the tuning choice (``<out>/tune/choice.json``: it exists once tuning has finished) and every
study point whose results exist, and summarises them exactly as the finished study would
(:func:`ssrl_lab.study.summarize`), into ``<out>/study-partial.json`` and ``study-partial.md``,
never over ``study.json``. The markdown opens with what is missing. With one seed per system a
claim's interval covers test speakers only, and the power table gives the speakers-only lower
bound; both say so.

    python -m ssrl_lab.study_partial --out outputs/study200 [--restore-from outputs/study200-archive] \\
        -p extra_points '["ssrl:30:3", ...]'        # the parameters the study runs with
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import ConfigError, check
from .study import StudyConfig, read_json, restore, study_markdown, study_points, summarize
from .utils.io import atomic_write_json, atomic_write_text

__all__ = ["report_partial", "partial_markdown", "study_config_from_params", "main"]

#: 06_study parameters that change how runs train, not which points the study has
_TRAINING_ONLY = ("max_steps_per_epoch", "tracking", "device", "corpus", "archive_to", "run_dir")


def study_config_from_params(out: str, params: Mapping[str, Any]) -> StudyConfig:
    """The :class:`~ssrl_lab.study.StudyConfig` that ``06_study``'s parameters describe, for reading
    the study in ``out`` (parameters that only change how runs train are accepted and ignored;
    an unknown one is an error)."""
    fields = set(StudyConfig.field_names())
    unknown = [k for k in params if k not in fields and k not in _TRAINING_ONLY]
    if unknown:
        raise ConfigError(f"unknown study parameter(s) {unknown}; known: {sorted(fields | set(_TRAINING_ONLY))}")
    given = {k: v for k, v in params.items() if k in fields and k not in (*_TRAINING_ONLY, "out") and v is not None}
    return StudyConfig(out=out, **given)


def report_partial(study: StudyConfig) -> dict:
    """Summarise the finished points of ``study`` (see the module docstring); returns the summary
    with ``"partial": {"finished", "planned", "missing"}`` and writes ``study-partial.json/.md``."""
    choice_path = study.out_dir / "tune" / "choice.json"
    check(choice_path.exists(), f"{choice_path} does not exist: the study has not finished tuning, so no setting "
                                "is chosen yet and no study point can have trained")
    choice = read_json(choice_path)
    missing_systems = [s for s in study.systems if s not in choice]
    check(not missing_systems, f"{choice_path} has no choice for {missing_systems}: was it written by another study?")
    points = study_points(study, choice)
    done = [p for p in points if Path(p["results"]).exists()]
    check(bool(done), f"no study point in {study.out_dir / 'runs'} has finished yet ({len(points)} planned)")
    summary = summarize(study, choice, done)
    summary["partial"] = {"finished": len(done), "planned": len(points),
                          "missing": [f"{p['system']} E = {p['budget']} seed {p['seed']}"
                                      for p in points if not Path(p["results"]).exists()]}
    atomic_write_json(study.out_dir / "study-partial.json", summary)
    atomic_write_text(study.out_dir / "study-partial.md", partial_markdown(summary))
    return summary


def partial_markdown(summary: dict) -> str:
    """``study.md``'s sections under a banner: how many points are in, which are missing, and
    what one seed per system can and cannot say."""
    part = summary["partial"]
    one_seed = any(r["n_seeds"] < 2 for r in summary["table"])
    banner = [f"# Study (interim: {part['finished']} of {part['planned']} points finished)", "",
              "**Interim results**: the study is still training. Every figure below comes from the finished "
              "points only and will change when the rest are in; a system or budget without finished runs "
              "is absent or reads n/a."]
    if one_seed:
        banner += ["", "Rows with 1 seed have no seed variance: their intervals cover test speakers only, and "
                       "their minimal detectable difference is a lower bound (speakers only)."]
    if part["missing"]:
        banner += ["", f"Not yet finished ({len(part['missing'])}): " + "; ".join(part["missing"]) + "."]
    body = study_markdown(summary).removeprefix("# Study\n")
    return "\n".join(banner) + "\n" + body


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from .notebook_params import resolve_path
    from .sweep import SweepError, parse_value

    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.study_partial", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/study", help="the study folder")
    ap.add_argument("--restore-from", default=None, metavar="DIR", help="first copy this archive into --out where missing")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a 06_study parameter the study runs with (e.g. -p extra_points '[\"ssrl:30:3\"]')")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out = str(resolve_path(args.out))
    try:
        if args.restore_from:
            n = restore(StudyConfig(out=out), resolve_path(args.restore_from))
            print(f"study: {n} file(s) restored from {args.restore_from}")
        study = study_config_from_params(out, {name: parse_value(value) for name, value in args.param})
        summary = report_partial(study)
    except (ConfigError, SweepError, FileNotFoundError) as e:
        print(f"study report refused: {e}", file=sys.stderr)
        return 2
    part = summary["partial"]
    print(f"study (interim): {part['finished']} of {part['planned']} points finished; {study.out_dir / 'study-partial.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
