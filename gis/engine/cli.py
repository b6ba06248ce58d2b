"""`gis invert`, `gis shift`, `gis design`: parse, call the engine, save a fixed set of files."""

from __future__ import annotations

import click

from ..cli_options import DEVICE, factory_options
from ..errors import GisUsageError
from ..ops import AGGS
from .checks import CheckSettings
from .settings import LR_SCHEDULES, PRECISIONS, RECIPES, invert_settings, shift_settings

_SETTINGS_HELP = ("Defaults in [brackets] are the seller recipe's (the default); --recipe paper and "
                  "--recipe official-code bring their own loops (docs/ENGINE.md, Shifting).")
# the defaults the help shows: `gis shift` runs the seller recipe
_S, _I, _C = shift_settings("seller"), invert_settings("seller"), CheckSettings()


def _weights(weights: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())


_LOSS_HELP = ("Loss term NAME=WEIGHT, repeatable; merged into the {what} objective's terms, "
              "0 switches a term off (`gis losses` lists them; docs/ENGINE.md) [{default}].")


def _default_out(ctx: click.Context, _param, value):
    """--out, or the first gis-runs/<command>-NNN (001, 002, ...) that does not exist yet."""
    if value is not None:
        return value
    from pathlib import Path

    root = Path("gis-runs")
    k = 1
    while (root / f"{ctx.info_name}-{k:03d}").exists():
        k += 1
    out = str(root / f"{ctx.info_name}-{k:03d}")
    click.echo(f"no --out: the run goes to {out}", err=True)
    return out


def _latent_space_option(f):
    return click.option(
        "--latent-space", default=None,
        help="Latent space the engine works in, one the generator offers (stylegan2: z, w, "
             "wplus; docs/MODELS.md). Default: the generator's first (z).")(f)


def _common_model_options(f):
    f = click.option("--device", default="cpu", show_default=True, type=DEVICE,
                     help="torch device (cpu, cuda, cuda:1).")(f)
    f = click.option("--trust", is_flag=True,
                     help="Allow pickle-based checkpoints/data you trust (AIP .tar, "
                          "pro_gan_pytorch .bin, DVBPR .npy).")(f)
    f = click.option("--out", default=None, type=click.Path(file_okay=False),
                     callback=_default_out,
                     help="Output folder (must not exist unless --overwrite). Default: the "
                          "next free gis-runs/COMMAND-NNN in the current folder.")(f)
    f = click.option("--overwrite", is_flag=True,
                     help="Replace an existing output folder that gis wrote (a folder holding "
                          "other files is refused).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")(f)
    f = click.option("--seed", default=0, show_default=True, type=int)(f)
    return f


def _precision_option(defaults):
    return click.option(
        "--precision", type=click.Choice(list(PRECISIONS)), default=None,
        help=f"Arithmetic of the optimisation's forward passes: float32 (the paper), bfloat16 "
             f"(autocast; results and the optimiser stay float32), auto (bfloat16 where the "
             f"device computes it natively). On gis shift it sets both loops "
             f"[{defaults.precision}; docs/ENGINE.md, Speed].")


def shift_settings_options(f):
    """The settings options of `gis shift` (recipe, loops, aggregation, loss terms, checks,
    precision), shared with `gis batch`, whose tasks are `gis shift` runs."""
    options = (
        click.option("--recipe", type=click.Choice(list(RECIPES)), default="seller",
                     show_default=True,
                     help="seller: the paper's objective + realism, identity, silhouette and "
                          "distinctness terms (docs/ENGINE.md); paper: the article; "
                          "official-code: the authors' scripts (docs/METHOD.md)."),
        click.option("--category", default=None,
                     help="Class-conditional generators (dvbpr-gan, biggan): the category to "
                          "shift under, name or index. Default: the dataset item's own "
                          "category."),
        click.option("--n", type=int, default=None, help=f"Number of variants [{_S.n}]."),
        click.option("--eps", type=float, default=None,
                     help=f"Shift bound per coordinate [{_S.eps}]."),
        click.option("--steps", type=int, default=None, help=f"Shifting steps [{_S.steps}]."),
        click.option("--invert-steps", type=int, default=None,
                     help=f"Inversion steps [{_I.steps}]."),
        click.option("--lr", type=float, default=None,
                     help=f"Adam learning rate for shifts [{_S.lr}]."),
        click.option("--lr-schedule", type=click.Choice(list(LR_SCHEDULES)), default=None,
                     help=f"Learning-rate schedule: constant (the paper) or cosine (annealed to "
                          f"0 over the steps). Given, it sets BOTH the inversion and the "
                          f"shifting loop; not given, each keeps its recipe's [seller: "
                          f"inversion {_I.lr_schedule}, shifting {_S.lr_schedule}]."),
        click.option("--aggregation", type=click.Choice(list(AGGS)), default=None,
                     help=f"How scores over target users combine [{_S.aggregation}]."),
        click.option("--temperature", type=float, default=None,
                     help=f"softmin/coverage temperature, in score units [{_S.temperature}]."),
        click.option("--top-k", type=int, default=None,
                     help=f"coverage: the top-K to enter [{_S.top_k}]."),
        click.option("--loss", "losses", multiple=True, metavar="NAME=WEIGHT",
                     help=_LOSS_HELP.format(what="shifting", default=_weights(_S.losses))
                     + " (the seller recipe's). E.g. --loss silhouette=0 lets the variants "
                       "change the item's shape."),
        click.option("--loss-option", "loss_options", multiple=True, metavar="NAME.KEY=VALUE",
                     help="An option of a shifting term, repeatable: NAME.KEY=VALUE with VALUE "
                          "a JSON scalar or text, e.g. --loss-option distinct.reduction=pairs "
                          "(`gis plugins check NAME` and docs/ENGINE.md list a term's "
                          "options)."),
        click.option("--invert-loss", "invert_losses", multiple=True, metavar="NAME=WEIGHT",
                     help=_LOSS_HELP.format(what="inversion", default=_weights(_I.losses))),
        click.option("--min-silhouette-iou", type=float, default=None,
                     help=f"Identity check: the smallest silhouette IoU with the item a "
                          f"recommended variant may have, in [0, 1] "
                          f"[{_C.min_silhouette_iou}] (docs/ENGINE.md, Checks)."),
        click.option("--min-distance", type=float, default=None,
                     help=f"Distinctness check: a variant closer than this LPIPS to a better "
                          f"one (or to the item) fails; the distinct term's threshold follows "
                          f"it [{_C.min_distance}]."),
        click.option("--no-realism-check", is_flag=True,
                     help="Do not check the variants with the generator's realism score."),
        click.option("--no-category-check", is_flag=True,
                     help="Do not check that a variant's shape still votes for the item's "
                          "category among the catalogue's products."),
        _precision_option(_S),
    )
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@click.option("--generator", "generator_name", default="progan", show_default=True)
@click.option("--generator-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--item", type=click.Path(dir_okay=False), default=None,
              help="Item image (any common format). Default: the dataset's default item.")
@click.option("--item-id", default=None, help="An item of the dataset instead of --item.")
@click.option("--data", default="fashion-colors", show_default=True,
              help="Dataset for --item-id and the default item.")
@click.option("--steps", type=int, default=None, help=f"Inversion steps [{_I.steps}].")
@click.option("--restarts", type=int, default=None,
              help=f"Independent starts, the best is kept [{_I.restarts}].")
@click.option("--loss", "losses", multiple=True, metavar="NAME=WEIGHT",
              help=_LOSS_HELP.format(what="inversion", default=_weights(_I.losses)))
@_precision_option(_I)
@_latent_space_option
@_common_model_options
@factory_options("generator", "dataset")
def invert(generator_name, generator_checkpoint, item, item_id, data, steps, restarts, losses,
           precision, latent_space, device, trust, out, overwrite, quiet, seed):
    """Invert an item image into a generator's latent space (LPIPS(VGG) + MSE)."""
    from . import commands
    from .objective import parse_loss_weights

    commands.invert_command(
        generator=generator_name, generator_checkpoint=generator_checkpoint, item=item,
        item_id=item_id, data=data, device=device, trust=trust, out=out, overwrite=overwrite,
        progress=not quiet, overrides=dict(steps=steps, restarts=restarts, seed=seed,
                                           precision=precision,
                                           losses=parse_loss_weights(losses)),
        latent_space=latent_space)


@click.command(epilog=_SETTINGS_HELP)
@click.option("--generator", "generator_name", default="progan", show_default=True)
@click.option("--recommender", "recommender_name", default="dvbpr", show_default=True)
@click.option("--generator-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--recommender-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--item", type=click.Path(dir_okay=False), default=None,
              help="Item image. Default: the dataset's documented default item.")
@click.option("--item-id", default=None, help="An item of the dataset instead of --item.")
@click.option("--random-latent", is_flag=True,
              help="No item: shift a random latent (the paper's class-centric setting).")
@click.option("--data", default=None,
              help="Catalogue dataset (ranks, coverage, default item). Default: the one the "
                   "recommender was trained on.")
@click.option("--users", default=None,
              help="Comma-separated target user ids. With none of --users, --users-file, "
                   "--n-users: all users of the recommender (as cheap as one user with the "
                   "mean aggregation).")
@click.option("--users-file", type=click.Path(dir_okay=False), default=None,
              help="File with one user id per line (or a CSV whose first column is the id).")
@click.option("--n-users", type=int, default=None, help="A random sample of N users (--seed).")
@shift_settings_options
@_latent_space_option
@_common_model_options
@factory_options("generator", "recommender", "dataset")
def shift(generator_name, recommender_name, generator_checkpoint, recommender_checkpoint, item,
          item_id, random_latent, data, users, users_file, n_users, recipe,
          category, n, eps,
          steps, invert_steps, lr, lr_schedule, aggregation, temperature, top_k, losses,
          loss_options, invert_losses,
          min_silhouette_iou, min_distance, no_realism_check, no_category_check, precision,
          latent_space, device,
          trust, out, overwrite, quiet, seed):
    """Propose n variants of an item that the target users would prefer.

    Writes OUT/item.png, base.png, variant_XX.png, grid.png, result.json and latents.safetensors
    (docs/OUTPUTS.md).
    """
    from . import commands
    from .objective import parse_loss_options, parse_loss_weights

    if random_latent and (item or item_id):
        raise GisUsageError("--random-latent shifts a random latent: drop --item/--item-id")
    user_list = [u for u in users.split(",")] if users is not None else None
    commands.shift_command(
        generator=generator_name, recommender=recommender_name,
        generator_checkpoint=generator_checkpoint, recommender_checkpoint=recommender_checkpoint,
        item=item, item_id=item_id, random_latent=random_latent, data=data, users=user_list,
        users_file=users_file, n_users=n_users, device=device, trust=trust, out=out,
        overwrite=overwrite, progress=not quiet, category=category,
        invert_overrides=dict(steps=invert_steps, seed=seed, precision=precision,
                              lr_schedule=lr_schedule,
                              losses=parse_loss_weights(invert_losses, "--invert-loss")),
        shift_overrides=dict(recipe=recipe, n=n, eps=eps, steps=steps, lr=lr, precision=precision,
                             lr_schedule=lr_schedule,
                             aggregation=aggregation, temperature=temperature, top_k=top_k,
                             losses=parse_loss_weights(losses), seed=seed,
                             loss_options=parse_loss_options(loss_options) or None),
        check_overrides=dict(min_silhouette_iou=min_silhouette_iou, min_distance=min_distance,
                             realism=False if no_realism_check else None,
                             category=False if no_category_check else None),
        latent_space=latent_space)


@click.command()
@click.option("--user", "user", required=True, help="Target user id.")
@click.option("--category", required=True, help="Category name or index.")
@click.option("--generator", "generator_name", default="dvbpr-gan", show_default=True)
@click.option("--recommender", "recommender_name", default="dvbpr", show_default=True)
@click.option("--n", type=int, default=16, show_default=True)
@click.option("--steps", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--eta", type=float, default=1.0, show_default=True,
              help="Weight of the LSGAN realism term.")
@click.option("--non-personalized", is_flag=True,
              help="Plain samples of G(., c) (the non-personalized baseline).")
@_latent_space_option
@_common_model_options
@factory_options("generator", "recommender")
def design(user, category, generator_name, recommender_name, n, steps, lr, eta,
           non_personalized, latent_space, device, trust, out, overwrite, quiet, seed):
    """DVBPR personalized design (Kang et al. 2017): the paper's baseline."""
    from . import commands

    commands.design_command(
        user=user, category=category, generator=generator_name, recommender=recommender_name,
        n=n, steps=steps, lr=lr, eta=eta, personalized=not non_personalized, device=device,
        trust=trust, out=out, overwrite=overwrite, progress=not quiet, seed=seed,
        latent_space=latent_space)
