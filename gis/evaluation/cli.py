"""`gis evaluate`: the paper's experiments on a gis dataset (see gis/evaluation/experiments.py)."""

from __future__ import annotations

import time

import click

from ..cli_options import DEVICE, factory_options
from ..errors import GisUsageError
from ..io import check_output_folder, write_json, write_text


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise GisUsageError(f"--n-users must be comma-separated integers (got {text!r})") from None


MARKER = "evaluate.json"


@click.command(help="Run the paper's experiments (Tables 2-5) on a dataset; resumable.")
@click.option("--experiment", "experiments", multiple=True, default=("all",), show_default=True,
              type=click.Choice(["table2", "table3", "table4", "table5", "all"]),
              help="Experiment(s) to run (repeatable).")
@click.option("--trials", default=10, show_default=True, type=int,
              help="Trials per table cell: table2 runs, table3 users (2 items each), table4 "
                   "per category, table5 per N.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder; an interrupted run resumes from it.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--steps", "shift_steps", default=None, type=int,
              help="Shifting steps per run [default: the engine's, 300].")
@click.option("--invert-steps", default=None, type=int,
              help="Inversion steps per run [default: the engine's, 200].")
@click.option("--n", default=None, type=int, help="Variants per run [default: 8].")
@click.option("--n-users", default="1,5,10,50,100,500,1000,10000", show_default=True,
              help="Table 5: numbers of target users.")
@click.option("--fid-real", default=2000, show_default=True, type=int,
              help="Held-out real images the FID/KID compare against.")
@click.option("--generator", default="progan", show_default=True)
@click.option("--latent-space", default=None,
              help="Latent space of --generator the runs work in (stylegan2: z, w, wplus; "
                   "docs/MODELS.md). Default: the generator's first (z).")
@click.option("--baseline-generator", default="dvbpr-gan", show_default=True,
              help="Conditional generator of the DVBPR design baseline (Table 2).")
@click.option("--recommender", default="dvbpr", show_default=True)
@click.option("--data", default="fashion-colors", show_default=True)
@click.option("--device", default="cpu", show_default=True, type=DEVICE,
              help="torch device: cpu, cuda or cuda:N.")
@click.option("--trust", is_flag=True, help="Allow pickle-based checkpoints/datasets.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@factory_options("generator", "recommender", "dataset")
def evaluate(experiments, trials, out, seed, shift_steps, invert_steps, n, n_users, fid_real,
             generator, latent_space,
             baseline_generator, recommender, data, device, trust, quiet):
    from .experiments import EXPERIMENTS, EvalSettings, TrialLog, check_settings, run_experiment
    from .runs import World
    from .tables import ImageMetrics, write_outputs

    s = EvalSettings(trials=trials, seed=seed, generator=generator,
                     baseline_generator=baseline_generator, recommender=recommender, data=data,
                     shift_steps=shift_steps, invert_steps=invert_steps, n=n,
                     n_users=_int_list(n_users), fid_real=fid_real, latent_space=latent_space)
    s.validate()
    if n is not None or shift_steps is not None:
        s.shift(0)  # validates n / steps with the engine's own checks before anything runs
    names = EXPERIMENTS if "all" in experiments else tuple(dict.fromkeys(experiments))
    out = check_output_folder(out, resume=True)  # a file is refused; a used folder below
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise GisUsageError(f"--out {out} is not empty and is not a gis evaluate folder: "
                            "choose a new or empty folder (nothing was written)")
    for name in names:  # before anything loads: a resume must use the same settings
        check_settings(out / name, s)
    world = World.load(generator=generator, baseline_generator=baseline_generator,
                       recommender=recommender, data=data, device=device, trust=trust,
                       latent_space=latent_space)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER, {"tool": "gis evaluate", "layout": 1})
    metrics = ImageMetrics(world, s, out / "_cache", device=device)
    for name in names:
        t0 = time.perf_counter()
        records = run_experiment(name, world, s, out, progress=not quiet)
        doc = write_outputs(name, records, TrialLog(out / name, s), metrics, s, out,
                            world.dataset)
        click.echo(f"{name}: {len(records)} trials -> {out / (name + '.md')} "
                   f"({time.perf_counter() - t0:.0f} s; figures: {', '.join(doc['figures'])})")
    summary = "\n".join((out / f"{name}.md").read_text() for name in EXPERIMENTS
                        if (out / f"{name}.md").exists())
    write_text(out / "RESULTS.md", "# gis evaluate\n\n" + summary)
    click.echo(f"all tables: {out / 'RESULTS.md'}")
