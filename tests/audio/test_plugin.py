"""The audio plugin loads through its entry point and registers its entries."""

from __future__ import annotations

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


def test_the_audio_plugin_declares_register_vocoders_for_other_plugins(host):
    from dgm import hookimpl
    from dgm.testing import registered_plugin
    from dgm_audio.representations import griffin_lim
    from dgm_audio.vocoders import vocoders

    assert vocoders() == {"audio:griffin-lim": griffin_lim}

    class Neural:
        @hookimpl
        def register_vocoders(self, register):
            register("tiny", lambda linear, log_mel: linear)

    with registered_plugin(Neural(), "neural", host):
        assert set(vocoders()) == {"audio:griffin-lim", "neural:tiny"}
    assert set(vocoders()) == {"audio:griffin-lim"}
