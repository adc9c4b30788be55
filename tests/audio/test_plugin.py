"""The audio plugin loads through its entry point and registers its entries."""

from __future__ import annotations

import pytest

from dgm.cli import main
from dgm.plugins import get_registry
from tests.conftest import REPO


def test_the_audio_plugin_registers_its_entries(host):
    registry = get_registry()
    assert host.plugins["audio"].loaded and not host.plugins["audio"].error
    names = {kind: {e.name for e in registry.entries(kind)}
             for kind in ("modalities", "datasets", "networks", "metrics")}
    assert "audio:audio" in names["modalities"]
    assert {"audio:spoken-digits", "audio:folder"} <= names["datasets"]
    assert {"audio:wavenet", "audio:wave-encoder", "audio:mel-decoder"} <= names["networks"]
    assert {"audio:mr-stft", "audio:log-spectral-distance",
            "audio:frechet-mel"} <= names["metrics"]


def test_a_bad_representation_in_a_recipe_names_the_table(in_tmp, capsys):
    recipe = REPO / "recipes" / "speech" / "digits-mel-vae.toml"
    assert main(["run", str(recipe), "run.dir=out", "data.representation=mfcc"]) == 2
    err = capsys.readouterr().err
    assert "[data]" in err and "mfcc" in err and "log-mel" in err


def test_vocoders_are_a_registry_kind_the_audio_plugin_declares(host, capsys):
    from dgm import hookimpl
    from dgm.testing import registered_plugin
    from dgm_audio.representations import griffin_lim
    from dgm_audio.vocoders import vocoders

    registry = get_registry()
    assert "vocoders" in registry.kinds and registry.kind_declared_by["vocoders"] == "audio"
    assert vocoders() == {"audio:griffin-lim": griffin_lim}
    assert registry.get("vocoders", "griffin-lim").plugin == "audio"

    class Neural:
        @hookimpl
        def register_vocoders(self, register):
            register("tiny", lambda linear, log_mel: linear)

    with registered_plugin(Neural(), "neural", host):
        assert set(vocoders()) == {"audio:griffin-lim", "neural:tiny"}
        assert host.plugins["neural"].registered == {"vocoders": ["neural:tiny"]}
    assert set(vocoders()) == {"audio:griffin-lim"}
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "vocoders: audio:griffin-lim" in out and "declares kinds: vocoders (vocoder)" in out
    assert main(["show", "griffin-lim", "--kind", "vocoder"]) == 0
    assert "audio:griffin-lim  (vocoder, plugin audio)" in capsys.readouterr().out


def test_a_plugin_loaded_before_the_kinds_declarer_still_registers_into_it():
    from dgm import hookimpl, kind_hookspec
    from dgm.plugins import PluginHost

    class Spec:
        @staticmethod
        @kind_hookspec("widget")
        def register_widgets(register):
            """Widgets."""

    class Early:
        @hookimpl
        def register_widgets(self, register):
            register("cog", object())

    class Declarer:
        @hookimpl
        def register_hookspecs(self, register):
            register(Spec)

        @hookimpl
        def register_widgets(self, register):
            register("gear", object())

    host = PluginHost()
    host.add_plugin(Early(), "early")
    assert "widgets" not in host.registry.kinds
    host.add_plugin(Declarer(), "declarer")
    host.report_unknown_hooks()
    assert [e.name for e in host.registry.entries("widgets")] == ["declarer:gear", "early:cog"]
    assert host.plugins["early"].registered == {"widgets": ["early:cog"]}
    assert not host.plugins["early"].error
    host.remove_plugin("declarer")
    assert "widgets" not in host.registry.kinds and host.registry.entries("widgets") == []


@pytest.mark.slow
def test_an_unknown_vocoder_is_refused_when_the_data_is_built(in_tmp, capsys):
    recipe = REPO / "recipes" / "speech" / "digits-mel-vae.toml"
    assert main(["run", str(recipe), "run.dir=out", "data.vocoder=hifi"]) == 2
    err = capsys.readouterr().err
    assert "[data] vocoder" in err and "unknown vocoder 'hifi'" in err
    assert "audio:griffin-lim" in err
    assert not (in_tmp / "out").exists()
