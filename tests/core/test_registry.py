"""Namespaced registry: clashes, did-you-mean, ambiguity, failed plugins."""

from __future__ import annotations

import pytest

from dgm.errors import RegistryError
from dgm.registry import Registry


def test_names_are_namespaced_by_plugin():
    r = Registry()
    r.add("datasets", "digits", object(), "image")
    assert r.get("datasets", "image:digits").plugin == "image"
    assert r.get("datasets", "digits").name == "image:digits"


def test_a_name_in_another_plugins_namespace_is_refused_and_a_repeat_is_a_clash():
    r = Registry()
    r.add("datasets", "image:digits", 1, "image")
    with pytest.raises(RegistryError, match="plugin 'impostor' registered dataset "
                                            "'image:digits', a name in namespace 'image', "
                                            "which belongs to plugin 'image'; refused"):
        r.add("datasets", "image:digits", 2, "impostor")
    with pytest.raises(RegistryError, match="belongs to dgm's core"):
        r.add("families", "core:vae", 2, "impostor")
    with pytest.raises(RegistryError, match="registered by plugin 'image' and again by "
                                            "plugin 'image'"):
        r.add("datasets", "digits", 3, "image")
    assert r.get("datasets", "image:digits").obj == 1


def test_unknown_name_lists_what_exists_and_the_closest_match():
    r = Registry()
    r.add("families", "vae", 1, "core")
    r.add("families", "flow", 2, "core")
    with pytest.raises(RegistryError) as err:
        r.get("families", "core:vea", where="recipe.toml: family.name")
    msg = str(err.value)
    assert msg.startswith("recipe.toml: family.name: unknown family 'core:vea'")
    assert "Did you mean 'core:vae'?" in msg and "core:flow, core:vae" in msg


def test_ambiguous_bare_name_lists_candidates():
    r = Registry()
    r.add("datasets", "brick", 1, "image")
    r.add("datasets", "brick", 2, "texture")
    with pytest.raises(RegistryError, match="ambiguous: image:brick, texture:brick"):
        r.get("datasets", "brick")


def test_unknown_name_mentions_a_plugin_that_failed_to_load():
    r = Registry()
    r.failed_plugins["audio"] = "ImportError: no module named soundfile"
    with pytest.raises(RegistryError, match="Plugin 'audio' failed to load: ImportError"):
        r.get("datasets", "audio:spoken-digits")


def test_invalid_names_are_refused():
    with pytest.raises(RegistryError, match="invalid name"):
        Registry().add("datasets", "a:b:c", 1, "p")
