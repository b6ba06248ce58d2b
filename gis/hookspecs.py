"""Hook specifications: the whole contract between gis and its plugins. No logic here.

A plugin is a module (or object) with functions named like the hooks below, decorated with
``gis.hookimpl``. It is found through the ``gis`` entry-point group (built-in plugins too).
Each hook receives a ``register`` callable; the plugin calls it once per thing it provides.
A hook name that matches no specification here leaves the plugin out as broken.

Factories receive keyword options only (the command line's ``--generator-option KEY=VALUE``
and its kin add to them) and every object they return is checked at once (``gis.contracts``:
attributes, card, a dummy batch); an exception that is not a ``gis.errors.GisError`` becomes a
one-line ``PluginContractError`` naming the plugin. docs/PLUGINS.md has the whole contract.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("gis")
hookimpl = pluggy.HookimplMarker("gis")


@hookspec
def register_generators(register):
    """Called once, when the generator registry is first used.

    Call ``register(name, factory, *, aliases=(), description="", trainer=None)`` for each
    generator. ``trainer``, when given, is a ``gis.training.Trainer`` subclass (the model's
    step in gis's resumable-run skeleton, its settings a ``Config`` dataclass): it makes
    ``gis train generator NAME`` work, one option per setting.
    ``factory(*, checkpoint=None, device="cpu", trust=False, **options)`` returns a
    ``gis.interfaces.Generator`` (its ``card`` a ``gis.ModelCard``); with ``checkpoint=None``
    it loads the plugin's shipped default weights (or raises ``MissingAssetError`` naming the
    command that provisions them).
    """


@hookspec
def register_recommenders(register):
    """Called once, when the recommender registry is first used.

    Call ``register(name, factory, *, aliases=(), description="", trainer=None)`` for each
    recommender (``trainer`` as for generators: ``gis train recommender NAME``).
    ``factory(*, checkpoint=None, device="cpu", trust=False, **options)`` returns a
    ``gis.interfaces.Recommender`` (image embedding, user vectors, scoring).
    """


@hookspec
def register_losses(register):
    """Called once, when the loss registry is first used.

    Call ``register(name, factory, *, aliases=(), description="")`` for each loss term.
    ``factory(**options)`` returns a ``gis.LossTerm`` (a ``torch.nn.Module``) whose
    ``forward(ctx)`` returns a scalar or one value per image, ``(B,)`` (docs/PLUGINS.md,
    "Losses").
    """


@hookspec
def register_datasets(register):
    """Called once, when the dataset registry is first used.

    Call ``register(name, factory, *, aliases=(), description="")`` for each dataset.
    ``factory(*, path=None, trust=False, **options)`` returns a ``gis.data.Dataset``.
    """


@hookspec
def register_commands(cli):
    """Called when the ``gis`` command line is built.

    ``cli`` is the top-level ``click.Group``; add commands or groups to it with
    ``cli.add_command(...)`` or the ``@cli.command()`` decorator.
    """
