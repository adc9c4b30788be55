"""Hook specifications: everything a dgm plugin can implement.

A plugin is a module (or object) whose functions are marked with ``@dgm.hookimpl`` and
whose distribution names it in the ``dgm`` entry-point group::

    [project.entry-points.dgm]
    myplugin = "my_package.plugin"

The entry-point name is the plugin's namespace: what it registers as ``"thing"`` is
found as ``"myplugin:thing"`` (or as ``"thing"`` where no other plugin uses that name).

Every hook here is a registration hook. The host calls each plugin's implementation once,
when the registry is first needed, with a ``register`` callback; the plugin calls
``register`` once per entry. The host validates names, prefixes the namespace, and
rejects clashes: a clash is reported against the second plugin, naming both, and the
first registration is kept. An exception raised inside a hook is reported by
``dgm plugins`` against that plugin; every other plugin keeps working.

Every ``register`` callback has the signature::

    register(name: str, obj: object, description: str = "") -> None

``name`` is a bare name (``"digits"``) or namespaced in the plugin's own namespace
(``"image:digits"`` from the image plugin; another plugin's namespace is refused);
``description`` is one line shown by ``dgm plugins`` and ``dgm recipes``.

Registered objects are *factories*: callables whose keyword arguments are the settings a
recipe may give. The recipe loader checks recipe keys against the factory's signature
(unknown key: error naming it; wrong type: error naming the annotation), so a factory's
signature is its documentation and its schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dgm import hookspec

Register = Callable[..., None]
"""``register(name, obj, description="")``: add one entry to the registry."""

HOOK_API_VERSION = 2
"""Version of this hook API; bumped when a hook, an argument or the data contract its
entries speak changes. A plugin may say which version it targets with a module attribute
``dgm_hook_api = 2``; the host reports a plugin that targets a newer API than its own,
and notes what to change in one that targets an older one.

- 2: conditions. A data set declares ``DataInfo.condition`` and yields it under the
  batch key ``"c"`` (1: ``DataInfo.classes`` and ``"label"``); a denoiser is built with
  ``condition_dim`` and called ``denoiser(x_t, t, condition)`` with an encoded condition
  (1: ``num_classes`` and class indices); an autoregressive network of a conditional
  model is built with ``condition_dim`` and called ``network(x, condition)``."""

MIGRATIONS = {1: "hook API 2 adds conditions: declare DataInfo(condition=Condition.of_classes"
                 "(names)) instead of classes=, yield the condition under 'c' instead of "
                 "'label', and give denoisers condition_dim instead of num_classes (see "
                 "CONTRIBUTING.md, 'Migrating from hook API 1'); unconditional models "
                 "keep working unchanged"}
"""What a plugin written against an older hook API should change, by that version."""


class DgmHookDeprecationWarning(DeprecationWarning):
    """Raised (as a warning) when a plugin implements a deprecated hook or argument."""


def deprecated_hook(replacement: str, since: int = HOOK_API_VERSION) -> Callable[[Any], Any]:
    """Mark a hookspec deprecated: a plugin implementing it gets a
    :class:`DgmHookDeprecationWarning` naming the hook and ``replacement`` when it is
    registered (pluggy's ``warn_on_impl``). Use instead of ``@hookspec``::

        @deprecated_hook("use register_things(register) instead")
        def register_stuff(register): ...
    """

    def mark(func: Any) -> Any:
        warning = DgmHookDeprecationWarning(
            f"hook {func.__name__!r} is deprecated since dgm hook API {since} and will be "
            f"removed in hook API {since + 1}: {replacement}")
        return hookspec(warn_on_impl=warning)(func)

    return mark


def deprecated_args(since: int = HOOK_API_VERSION, **replacements: str
                    ) -> Callable[[Any], Any]:
    """Mark arguments of a hookspec deprecated (pluggy's ``warn_on_impl_args``): a plugin
    whose implementation takes one gets a :class:`DgmHookDeprecationWarning` naming the
    hook, the argument and its replacement. Use instead of ``@hookspec``::

        @deprecated_args(registry="call register(...) instead")
        def register_things(register, registry): ...
    """

    def mark(func: Any) -> Any:
        args = {name: DgmHookDeprecationWarning(
            f"argument {name!r} of hook {func.__name__!r} is deprecated since dgm hook API "
            f"{since} and will be removed in hook API {since + 1}: {why}")
            for name, why in replacements.items()}
        return hookspec(warn_on_impl_args=args)(func)

    return mark



# -------------------------------------------------------------------------------------
# Plugins extending dgm's hooks
# -------------------------------------------------------------------------------------


@hookspec
def register_hookspecs(register: Callable[[object], None]) -> None:
    """Declare new hooks that other plugins may implement (as pytest's
    ``pytest_addhooks``).

    :param register: call ``register(module_or_class)`` with an object whose functions
        are marked with ``@dgm.hookspec``; they join the host's hooks.

    Called once for each plugin, right after it is registered and before its
    ``register_*`` hooks. The declaring plugin calls its hooks itself when it needs
    them, through ``dgm.plugins.get_host().pm.hook.<name>(...)``; a plugin implementing
    a hook that no loaded plugin declares is reported by ``dgm plugins``.

    A hookspec marked with ``@dgm.kind_hookspec("thing")`` and named
    ``register_things(register)`` adds the registry kind ``things``: the host calls every
    plugin's implementation (also those loaded before the declaring plugin) with the
    usual ``register`` callback, and the entries are found with
    ``get_registry().get("things", name)`` and listed by ``dgm plugins``. The audio
    plugin declares ``register_vocoders(register)`` this way (``dgm_audio.hookspecs``).
    """


# -------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------


@hookspec
def register_modalities(register: Register) -> None:
    """Register modalities: kinds of data with their codec, defaults and previews.

    :param register: call ``register(name, factory)`` with a zero-argument-required
        factory returning a :class:`dgm.contract.Modality`.

    Data sets name their modality (``DataInfo.modality``); the modality supplies the
    default networks and likelihood when a recipe leaves them out, and writes previews.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register data sets.

    :param register: call ``register(name, factory)`` where ``factory(split, **settings)``
        returns a :class:`dgm.contract.DataSource` for ``split`` in
        ``{"train", "val", "test"}``. ``settings`` come from the recipe's ``[data]``
        table (except ``name``, ``batch_size`` and ``num_workers``, which the trainer
        uses). Files that cannot be read raise :class:`dgm.errors.DataError` naming them.
    """


# -------------------------------------------------------------------------------------
# Models
# -------------------------------------------------------------------------------------


@hookspec
def register_families(register: Register) -> None:
    """Register model families: how parameters are fitted (VAE, flow, diffusion, ...).

    :param register: call ``register(name, factory)`` where
        ``factory(ctx, **settings)`` returns a :class:`dgm.contract.Family`.
        ``ctx`` is a :class:`dgm.assembly.BuildContext`: it builds the networks, the
        likelihood and the prior the recipe names, with shapes filled in.
    """


@hookspec
def register_likelihoods(register: Register) -> None:
    """Register likelihoods p(x | params).

    :param register: call ``register(name, factory)`` where ``factory(**settings)``
        returns a :class:`dgm.contract.Likelihood`. A factory that accepts ``levels``
        receives the data set's number of discrete levels unless the recipe sets it.
    """


@hookspec
def register_priors(register: Register) -> None:
    """Register priors p(z) on latents.

    :param register: call ``register(name, factory)`` where
        ``factory(shape, **settings)`` returns a :class:`dgm.contract.Prior` over latents
        of ``shape`` (per example, without the batch dimension).
    """


@hookspec
def register_networks(register: Register) -> None:
    """Register networks (encoders, decoders, denoisers, critics, ...).

    :param register: call ``register(name, factory)`` where ``factory(**kwargs)`` returns
        a ``torch.nn.Module``. The family passes the structural arguments it needs (for a
        VAE: ``data_shape``, ``latent_dim`` and, for decoders, ``param_channels``); the
        recipe's ``[networks.<role>]`` table supplies the rest.
    """


# -------------------------------------------------------------------------------------
# Evaluation and recipes
# -------------------------------------------------------------------------------------


@hookspec
def register_metrics(register: Register) -> None:
    """Register sample metrics.

    :param register: call ``register(name, factory)`` where ``factory(**settings)``
        returns a callable ``metric(samples, reference) -> float`` over two batches of
        examples in the data representation, shaped ``(N, ...)``. Metrics must not
        download weights. A shape the metric cannot handle raises ``ValueError``.

    ``dgm evaluate`` computes each metric named in ``[evaluate] metrics`` (default: the
    modality's ``metrics``) twice: generated samples against real examples, and real
    against real as a reference. ``reference`` is held-out data, unless the callable has
    an attribute ``against = "train"`` (a memorisation check): then it is the training
    examples. :class:`dgm.metrics.Metric` wraps a function with that attribute.
    """


@hookspec
def register_recipes(register: Register) -> None:
    """Register recipes shipped inside a plugin.

    :param register: call ``register(name, path)`` with the ``pathlib.Path`` of a TOML
        recipe inside the plugin's package. ``dgm recipes`` lists it and
        ``dgm run plugin:name`` runs it.
    """
