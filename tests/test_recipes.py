"""Every shipped recipe runs with tiny overrides; overrides and listing work."""

from __future__ import annotations

import json
import math
import re

import pytest

from dgm.assembly import BuildContext, build_data, build_family
from dgm.cli import main
from dgm.contract import DataInfo, Modality
from dgm.errors import RecipeError
from dgm.plugins import get_registry
from dgm.recipes import Recipe, apply_override, read_recipe
from dgm.workflows import find_recipe
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # trains, installs or starts processes: not in the fast tier

TINY = ["train.steps=3", "train.progress=false", "train.log_every=1", "sample.n=4",
        'sample.size=""', "evaluate.max_examples=8", "evaluate.metric_samples=8"]
REPO_RECIPES = sorted((REPO / "recipes").rglob("*.toml"))
PLUGIN_RECIPES = [e.name for e in get_registry().entries("recipes")]


def tiny_evaluation(recipe: str) -> list[str]:
    """Overrides that set every whole-number likelihood setting (IWAE's k, a bound's
    number of timesteps, ...) to 2, so evaluation is quick."""
    path = find_recipe(recipe, get_registry())
    settings = read_recipe(path).tables.get("evaluate", {}).get("likelihood", {})
    return [f"evaluate.likelihood.{key}=2" for key, value in settings.items()
            if isinstance(value, int) and not isinstance(value, bool)]


@pytest.mark.parametrize("recipe", [str(p) for p in REPO_RECIPES] + PLUGIN_RECIPES,
                         ids=[p.stem for p in REPO_RECIPES] + PLUGIN_RECIPES)
def test_every_recipe_runs_end_to_end(recipe, in_tmp):
    data = read_recipe(find_recipe(recipe, get_registry())).tables["data"]
    if data["name"] == "core:latents":  # a composed recipe: train its autoencoder first
        vae = str(REPO / "recipes" / "image" / "digits-vae.toml")
        assert main(["run", vae, f"run.dir={data['run']}", *TINY]) == 0
    assert main(["run", recipe, "run.dir=out", *TINY, *tiny_evaluation(recipe)]) == 0
    report = json.loads((in_tmp / "out" / "evaluation.json").read_text())
    if report["kind"] == "none":
        assert "no likelihood" in report["note"]
    else:
        assert report["examples"] == 8 and math.isfinite(report["nll_nats"])
    assert (in_tmp / "out" / "samples" / "grid.png").is_file()


def test_there_are_recipes_in_the_repo_and_in_plugins():
    assert any(p.name == "digits-vae.toml" for p in REPO_RECIPES)
    assert "image:digits-vae-conv" in PLUGIN_RECIPES


def test_overrides_parse_toml_values_and_fall_back_to_strings():
    recipe = Recipe({"train": {"steps": 5}})
    for item in ("train.steps=7", "train.ema=true", "networks.decoder.hidden=[8, 16]",
                 "data.path=/some/where", "run.name=\"quoted\"", "train.lr=3e-4"):
        apply_override(recipe, item)
    assert recipe.tables["train"] == {"steps": 7, "ema": True, "lr": 3e-4}
    assert recipe.tables["networks"]["decoder"]["hidden"] == [8, 16]
    assert recipe.tables["data"]["path"] == "/some/where"
    assert recipe.tables["run"]["name"] == "quoted"
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_override(recipe, "train.steps")


def test_the_run_folder_keeps_the_resolved_recipe(in_tmp):
    recipe = str(REPO / "recipes" / "image" / "digits-vae.toml")
    assert main(["run", recipe, "run.dir=out", "family.latent_dim=3", *TINY]) == 0
    saved = read_recipe(in_tmp / "out" / "recipe.toml")
    assert saved.tables["family"]["latent_dim"] == 3
    assert saved.tables["train"]["lr"] == 1e-3 and saved.tables["train"]["ema"] is False


def test_dgm_recipes_lists_repo_and_plugin_recipes(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "recipes/image/digits-vae.toml" in out and "image:digits-vae-conv" in out
    assert "VAE on 8x8 digits" in out


def test_a_plugin_recipe_runs_by_name(in_tmp):
    assert main(["run", "digits-vae-conv", "run.dir=byname", *TINY]) == 0
    assert (in_tmp / "byname" / "model" / "model.safetensors").is_file()


def test_a_network_table_without_a_name_sets_up_the_modality_default(host):
    tables = {"data": {"name": "image:digits"}, "family": {"name": "core:vae", "latent_dim": 2},
              "networks": {"decoder": {"channels": [8, 4], "hidden": 16}}}
    recipe = Recipe(tables, "nameless.toml")
    recipe.validate(host.registry)
    family = build_family(recipe, host.registry, build_data(recipe, host.registry, "val").info)
    assert type(family.decoder).__name__ == "ConvDecoder"  # the image modality's default
    assert sum(p.numel() for p in family.decoder.parameters()) < 5000  # with these settings
    tables["networks"]["decoder"]["hiden"] = 3
    with pytest.raises(RecipeError, match=r"nameless.toml: \[networks.decoder\]: unknown "
                       "key 'hiden'. Did you mean 'hidden'?"):
        build_family(Recipe(tables, "nameless.toml"), host.registry,
                     DataInfo("image:image", (1, 8, 8), levels=17))
    with pytest.raises(RecipeError, match="networks.decoder: should be a table of settings"):
        Recipe({**tables, "networks": {"decoder": 3}}).validate(host.registry)


@pytest.mark.parametrize("role", ["encoder", "denoiser", "coupling"])
def test_a_role_the_modality_has_no_default_for_is_named_with_a_fitting_example(host, role):
    bare = Modality(name="test:bare", read=print, write=print, preview=print,
                    networks={"decoder": "image:mlp-decoder"})
    recipe = Recipe({"networks": {role: {"hidden": 8}}}, "r.toml")
    ctx = BuildContext(recipe, host.registry, DataInfo("test:bare", (1, 16)), bare)
    with pytest.raises(RecipeError) as error:
        ctx.network(role, data_shape=(1, 16))
    message = str(error.value)
    assert message.startswith(f"r.toml: [networks.{role}]: modality 'test:bare' has no "
                              f"default network for role {role!r} (it has defaults for: "
                              "decoder)")
    example = re.search(rf'\[networks.{role}\] name = "([^"]+)"', message)[1]
    assert host.registry.get("networks", example)  # a registered network ...
    kinds = {"encoder": "encoder", "denoiser": "denoiser|unet", "coupling": "coupling"}
    assert re.search(kinds[role], example), example  # ... that fits the role
