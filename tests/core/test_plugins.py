"""Plugin loading through real entry points: lazy, fault-tolerant, selectable, traceable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pluggy
import pytest

from dgm import hookimpl, hookspec, hookspecs
from dgm.errors import RegistryError
from dgm.testing import registered_plugin
from tests.conftest import dgm_cli


def fake_distribution(site, name: str, module_source: str):
    """Install a one-module distribution with a ``dgm`` entry point into ``site``: a real
    dist-info folder that importlib.metadata finds when ``site`` is on sys.path."""
    module = f"{name}_plugin"
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{module}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[dgm]\n{name} = {module}\n")


def plugins_json(site=None, **env):
    extra = {"PYTHONPATH": str(site)} if site else {}
    result = dgm_cli("plugins", "--json", env={**extra, **env})
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)}


def test_core_and_image_load_and_no_hook_is_misspelt(host):
    assert {"core", "image"} <= set(host.plugins)
    assert "core:vae" in host.registry.by_plugin("core")["families"]
    assert "image:digits" in host.registry.by_plugin("image")["datasets"]


def test_importing_dgm_loads_no_plugin():
    code = ("import sys, dgm, dgm.cli, dgm.contract; "
            "print(any(m.startswith('dgm_image') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_a_plugin_that_raises_at_import_is_reported_and_the_rest_work(tmp_path):
    fake_distribution(tmp_path, "broken", "raise RuntimeError('kaboom at import')\n")
    found = plugins_json(tmp_path)
    assert found["broken"]["loaded"] is False
    assert "RuntimeError: kaboom at import" in found["broken"]["error"]
    assert found["broken"]["distribution"] == "broken_plugin"
    assert found["image"]["loaded"] and found["image"]["error"] is None
    text = dgm_cli("plugins", env={"PYTHONPATH": str(tmp_path)}).stdout
    assert "broken  (broken_plugin 0.3)  FAILED" in text
    assert "error: RuntimeError: kaboom at import" in text


def test_a_plugin_cannot_take_another_plugins_name_whichever_loads_first(tmp_path):
    # "aaa" sorts before "image", so it loads first: the order must not decide the owner
    fake_distribution(tmp_path, "aaa", """
        from dgm import hookimpl

        @hookimpl
        def register_datasets(register):
            register("image:digits", object)
            register("aaa:mine", object)
        """)
    found = plugins_json(tmp_path)
    assert "plugin 'aaa' registered dataset 'image:digits', a name in namespace 'image', " \
           "which belongs to plugin 'image'; refused" in found["aaa"]["error"]
    assert found["aaa"]["registered"] == {"datasets": ["aaa:mine"]}
    assert found["image"]["error"] is None  # the genuine owner is never blamed
    assert "image:digits" in found["image"]["registered"]["datasets"]


def test_a_clashing_name_is_reported_naming_both_plugins():
    from dgm.registry import Registry

    registry = Registry()
    registry.add("datasets", "digits", object, "image")
    with pytest.raises(RegistryError, match="'image:digits' is registered by plugin 'image' and "
                                        "again by plugin 'image'"):
        registry.add("datasets", "image:digits", object, "image")


def test_a_hook_that_raises_is_reported_against_its_plugin(tmp_path):
    fake_distribution(tmp_path, "faulty", """
        from dgm import hookimpl

        @hookimpl
        def register_families(register):
            raise ValueError("bad family table")
        """)
    found = plugins_json(tmp_path)
    assert "register_families raised ValueError: bad family table" in found["faulty"]["error"]
    assert {"core:vae", "core:diffusion"} <= set(found["core"]["registered"]["families"])


@pytest.mark.slow
def test_dgm_plugins_selects_which_plugins_load(tmp_path):
    assert set(plugins_json(DGM_PLUGINS="")) == {"core"}
    assert set(plugins_json(DGM_PLUGINS="image")) == {"core", "image"}


def test_hook_calls_can_be_traced():
    result = dgm_cli("plugins", env={"DGM_TRACE_HOOKS": "1"})
    assert "register_families" in result.stderr and "register_datasets" in result.stderr


def test_misspelt_hook_fails_check_pending(host):
    class Misspelt:
        @hookimpl
        def register_dataset(self, register):  # missing the s
            register("x", object)

    with pytest.raises(pluggy.PluginValidationError, match="register_dataset"), \
            registered_plugin(Misspelt(), "misspelt", host):
        pass
    assert "misspelt" not in host.plugins


def test_registered_plugin_adds_and_removes_its_entries(host):
    class Extra:
        @hookimpl
        def register_likelihoods(self, register):
            register("uniform", object, "a test entry")

    with registered_plugin(Extra(), "extra", host):
        assert host.registry.get("likelihoods", "uniform").name == "extra:uniform"
    with pytest.raises(RegistryError, match="unknown likelihood 'extra:uniform'"):
        host.registry.get("likelihoods", "extra:uniform")


def test_a_hook_with_a_wrong_signature_is_reported_and_the_rest_work(tmp_path):
    fake_distribution(tmp_path, "wrongsig", """
        from dgm import hookimpl

        @hookimpl
        def register_datasets(register, registry):
            register("x", object)
        """)
    found = plugins_json(tmp_path)
    error = found["wrongsig"]["error"]
    assert found["wrongsig"]["loaded"] is False
    assert "PluginValidationError" in error and "'wrongsig'" in error
    assert "{'registry'} are declared in the hookimpl but can not be found in the hookspec" \
        in error
    assert found["image"]["loaded"] and found["image"]["error"] is None


def test_a_hook_no_spec_declares_is_reported_with_the_closest_name(tmp_path):
    fake_distribution(tmp_path, "typo", """
        from dgm import hookimpl

        @hookimpl
        def register_dataset(register):
            register("x", object)
        """)
    found = plugins_json(tmp_path)
    assert "implements hook 'register_dataset', which no hookspec declares; did you mean " \
           "'register_datasets'?" in found["typo"]["error"]


@pytest.mark.slow
def test_a_plugin_targeting_a_newer_hook_api_is_reported(tmp_path):
    fake_distribution(tmp_path, "future", """
        dgm_hook_api = 99
        """)
    found = plugins_json(tmp_path)
    assert found["future"]["loaded"]
    assert "targets dgm hook API 99, but this dgm has hook API 2" in \
        found["future"]["warnings"][0]
    text = dgm_cli("plugins", env={"PYTHONPATH": str(tmp_path)}).stdout
    assert "warning: targets dgm hook API 99" in text


def test_a_plugin_targeting_an_older_hook_api_loads_with_a_note_of_what_to_change(tmp_path):
    fake_distribution(tmp_path, "elder", """
        dgm_hook_api = 1
        """)
    found = plugins_json(tmp_path)
    assert found["elder"]["loaded"] and found["elder"]["error"] is None
    (note,) = found["elder"]["warnings"]
    assert note.startswith("written against dgm hook API 1: hook API 2 adds conditions")
    assert "instead of 'label'" in note and "Migrating from hook API 1" in note


class OldSpecs:
    """A throw-away hookspec module with a deprecated hook and a deprecated argument."""

    @hookspecs.deprecated_hook("use register_datasets(register) instead", since=1)
    def register_old_things(self, register):
        """Old."""

    @hookspecs.deprecated_args(since=1, table="call register(...) instead")
    def register_new_things(self, register, table):
        """New, with an old argument."""


def test_implementing_a_deprecated_hook_or_argument_warns_naming_it():
    from dgm.plugins import PluginHost

    host = PluginHost()
    host.pm.add_hookspecs(OldSpecs)

    class Old:
        @hookimpl
        def register_old_things(self, register):
            pass

        @hookimpl
        def register_new_things(self, register, table):
            pass

    with pytest.warns(hookspecs.DgmHookDeprecationWarning) as caught, \
            registered_plugin(Old(), "old", host):
        warned = list(host.plugins["old"].warnings)
    messages = [str(w.message) for w in caught]
    assert any("hook 'register_old_things' is deprecated since dgm hook API 1 and will be "
               "removed in hook API 2: use register_datasets(register) instead" in m
               for m in messages), messages
    assert any("argument 'table' of hook 'register_new_things' is deprecated" in m
               for m in messages), messages
    assert len(warned) == 2


class SoundSpecs:
    @hookspec
    def register_sounds(self, register):
        """Register sounds (declared by a plugin for other plugins)."""


def test_a_plugin_declares_a_hook_that_another_plugin_implements():
    from dgm.plugins import PluginHost

    class Declarer:
        @hookimpl
        def register_hookspecs(self, register):
            register(SoundSpecs)

        @hookimpl
        def register_sounds(self, register):
            register("beep")

    class Implementer:
        @hookimpl
        def register_sounds(self, register):
            register("chirp")

    host = PluginHost()
    host.add_plugin(Implementer(), "second")  # loads before the plugin declaring the hook
    assert "implements hook 'register_sounds'" in host.unknown_hooks()["second"][0]
    host.add_plugin(Declarer(), "first")
    assert host.unknown_hooks() == {} and not host.plugins["first"].error
    host.pm.check_pending()
    found = []
    host.pm.hook.register_sounds(register=found.append)
    assert sorted(found) == ["beep", "chirp"]
