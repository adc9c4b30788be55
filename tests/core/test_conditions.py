"""Conditions in the contract: declarations, the encoder, every family given c, guidance,
and the declared roles the builder enforces."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import pytest
import torch
from torch import nn

from dgm import hookimpl
from dgm.assembly import build_data, build_family
from dgm.cli import main
from dgm.conditions import ClassEmbedding, ConditionEncoder, attach
from dgm.contract import Condition, DataInfo, TensorData, as_batch
from dgm.errors import RecipeError
from dgm.recipes import Recipe
from dgm.runs import RunDir
from dgm.testing import registered_plugin, tiny_recipe, write_recipe
from tests.conftest import fit_for_epochs

CLASSES = Condition.of_classes(["a", "b", "c"])


def test_a_condition_is_declared_once_and_survives_the_run_folder(tmp_path):
    info = DataInfo("image:image", (1, 8, 8), levels=17, condition=CLASSES)
    assert info.classes == ("a", "b", "c")  # hook API 1 readers still see the names
    run = RunDir(tmp_path / "run")
    run.write_data_info(info)
    assert run.read_data_info() == info
    legacy = DataInfo("image:image", (1, 8, 8), classes=("x", "y"))  # hook API 1
    assert legacy.condition == Condition.of_classes(["x", "y"])
    saved = json.loads((run.model_dir / "data_info.json").read_text())
    del saved["condition"]  # a data_info.json written before conditions existed
    (run.model_dir / "data_info.json").write_text(json.dumps(saved))
    assert run.read_data_info().condition == CLASSES


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Condition("colour"), "kind must be one of none, class, tokens, tensor"),
    (lambda: Condition.of_classes(["only"]), "at least 2 class names"),
    (lambda: Condition.of_tokens(["<pad>"], 8), "vocabulary"),
    (lambda: Condition.of_tensor("", (1, 4, 4)), "modality and shape"),
])
def test_a_malformed_condition_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_hook_api_1_batch_is_renamed_with_one_warning():
    import dgm.contract

    dgm.contract._warned_legacy_key = False
    with pytest.warns(DeprecationWarning, match="under 'label'.*under 'c'"):
        batch = as_batch({"x": torch.zeros(2), "label": torch.tensor([1, 0])})
    assert set(batch) == {"x", "c"} and batch["c"].tolist() == [1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_batch({"x": torch.zeros(2), "label": torch.tensor([1, 0])})  # warned once
    data = TensorData(torch.zeros(3, 2), torch.tensor([0, 1, 2]), DataInfo("t", (2,)))
    assert data[2]["c"].item() == 2 and "label" not in data[2]


def test_condition_dropout_replaces_the_encoding_by_the_null_vector():
    encoder = ConditionEncoder(ClassEmbedding(CLASSES, dim=4), CLASSES, dim=4, dropout=0.5)
    nn.init.normal_(encoder.null)
    torch.manual_seed(0)
    c = torch.zeros(4000, dtype=torch.long)
    dropped = (encoder(c) == encoder.null).all(1).float().mean()
    assert abs(float(dropped) - 0.5) < 0.03
    encoder.eval()  # no dropout outside training
    assert not (encoder(c) == encoder.null).all(1).any()
    assert torch.equal(encoder(None, 3), encoder.null.expand(3, 4))


def test_attach_broadcasts_the_encoding_over_positions():
    x, e = torch.randn(2, 3, 4, 5), torch.randn(2, 6)
    out = attach(x, e)
    assert out.shape == (2, 9, 4, 5) and torch.equal(out[:, :3], x)
    assert torch.equal(out[:, 3:, 2, 1], e)
    assert attach(torch.randn(2, 7), e).shape == (2, 13)


def _tiny_conditional(host, family: str, info: DataInfo, **tables):
    recipe = Recipe({"data": {"name": "image:digits"}, "family": {"name": family},
                     "condition": {"use": True, "dim": 8}, **tables}, "test")
    torch.manual_seed(0)
    return build_family(recipe, host.registry, info)


def test_a_conditional_likelihood_sums_to_one_over_every_value_for_each_condition(host):
    info = DataInfo("image:image", (1, 2, 2), levels=3, condition=CLASSES)
    family = _tiny_conditional(host, "core:autoregressive", info,
                               likelihood={"name": "core:categorical"},
                               networks={"autoregressive": {"hidden": 8, "layers": 2}})
    for p in family.parameters():  # away from the near-uniform start
        nn.init.normal_(p, std=0.5)
    grid = torch.tensor(list(itertools.product([-1.0, 0.0, 1.0], repeat=4))).reshape(-1, 1, 2, 2)
    per_class = []
    for k in range(3):
        log_p = family.log_likelihood(grid, torch.full((len(grid),), k)).values
        assert abs(float(log_p.exp().sum()) - 1) < 1e-4, k
        per_class.append(log_p)
    assert not torch.allclose(per_class[0], per_class[1])  # the condition matters


@pytest.mark.slow
def test_a_class_conditional_model_puts_more_mass_on_its_own_class(host):
    recipe = Recipe({"data": {"name": "image:digits", "batch_size": 64},
                     "family": {"name": "core:autoregressive"},
                     "condition": {"use": True, "dim": 16},
                     "networks": {"autoregressive": {"hidden": 32, "layers": 3}}}, "test")
    train = build_data(recipe, host.registry, "train")
    test = build_data(recipe, host.registry, "test")
    torch.manual_seed(0)
    family = build_family(recipe, host.registry, train.info)
    fit_for_epochs(family, train, epochs=6)
    x = torch.stack([test[i]["x"] for i in range(200)])
    c = torch.stack([test[i]["c"] for i in range(200)])
    scores = torch.stack([family.log_likelihood(x, torch.full_like(c, k)).values
                          for k in range(10)], 1)
    own = scores.gather(1, c[:, None])[:, 0]
    assert float((own > scores.mean(1)).float().mean()) > 0.9
    assert float((scores.argmax(1) == c).float().mean()) > 0.5  # chance is 0.1


def test_guidance_0_is_the_unconditional_prediction_and_1_the_conditional(host):
    info = DataInfo("image:image", (1, 2, 3), condition=CLASSES)
    family = _tiny_conditional(host, "core:diffusion", info,
                               networks={"denoiser": {"name": "core:mlp-denoiser",
                                                      "hidden": 16, "blocks": 1}})
    for p in family.parameters():
        nn.init.normal_(p, std=0.3)
    family.eval()
    x, t = torch.randn(4, 1, 2, 3), torch.tensor([3, 50, 200, 999])
    e = family.condition_encoder(torch.tensor([0, 1, 2, 1]))
    null = family.condition_encoder(None, 4)
    conditional, unconditional = family.denoiser(x, t, e), family.denoiser(x, t, null)
    assert not torch.allclose(conditional, unconditional)
    torch.testing.assert_close(family.predict(x, t, e, guidance=0.0), unconditional)
    torch.testing.assert_close(family.predict(x, t, e, guidance=1.0), conditional)
    torch.testing.assert_close(family.predict(x, t, e, guidance=3.0),
                               unconditional + 3 * (conditional - unconditional))

    def draw(k: int, guidance: float) -> torch.Tensor:
        return family.sample(3, torch.Generator().manual_seed(0),
                             condition=torch.full((3,), k), guidance=guidance, steps=4)

    assert torch.equal(draw(0, 0.0), draw(2, 0.0))  # at scale 0 c plays no part
    assert not torch.equal(draw(0, 1.0), draw(2, 1.0))


CONDITIONAL_FAMILIES = ["core:vae", "core:flow", "core:autoregressive", "core:diffusion",
                        "core:gan"]


@pytest.mark.slow
@pytest.mark.parametrize("family", CONDITIONAL_FAMILIES)
def test_every_family_trains_given_a_class_and_samples_the_one_asked_for(in_tmp, capsys,
                                                                         family):
    tables = tiny_recipe("image:digits", family, in_tmp / "run", steps=2)
    tables["condition"] = {"use": True, "dim": 8, "dropout": 0.1}
    if family == "core:diffusion":
        tables["family"].update(timesteps=20, sampling_steps=2)
    path = write_recipe(tables, in_tmp / "recipe.toml")
    assert main(["run", str(path)]) == 0
    report = json.loads((in_tmp / "run" / "evaluation.json").read_text())
    if family != "core:gan":
        assert report["condition"] == "class" and report["method"].endswith("given c (class)")
        assert math.isfinite(report["nll_nats"])
    capsys.readouterr()
    assert main(["sample", str(in_tmp / "run"), "--n", "2", "--condition", "7",
                 "--out", str(in_tmp / "sevens")]) == 0
    assert len(list((in_tmp / "sevens").glob("sample-*.png"))) == 2
    assert main(["sample", str(in_tmp / "run"), "--n", "1", "--condition", "eleven"]) == 2
    assert "its classes are: 0, 1, 2" in capsys.readouterr().err


def test_condition_use_on_data_without_a_condition_names_the_data_set(host):
    recipe = Recipe({"data": {"name": "texture:brick"}, "family": {"name": "core:vae"},
                     "condition": {"use": True}}, "r.toml")
    info = DataInfo("texture:texture", (3, 16, 16), levels=256)
    with pytest.raises(RecipeError, match=r"r.toml: condition.use: the data set "
                       "texture:brick declares no condition"):
        build_family(recipe, host.registry, info)


def test_the_legacy_diffusion_switch_still_conditions_with_a_deprecation(host):
    recipe = Recipe({"data": {"name": "image:digits"},
                     "family": {"name": "core:diffusion", "conditional": True},
                     "networks": {"denoiser": {"channels": [8], "norm_groups": 8,
                                               "layers_per_block": 1, "attention": [False]}}},
                    "old.toml")
    with pytest.warns(DeprecationWarning, match=r"family.conditional: deprecated; write "
                      r"\[condition\] use = true"):
        family = build_family(recipe, host.registry,
                              DataInfo("image:image", (1, 8, 8), levels=17,
                                       condition=Condition.of_classes("0123456789")))
    assert family.conditional


class ForgetfulDecoder(nn.Module):
    """A decoder factory that forgets ``param_channels``."""

    def __init__(self, data_shape: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(latent_dim, math.prod(data_shape))


class PlainDenoiser(nn.Module):
    """A denoiser factory written without conditions in mind."""

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = nn.Linear(math.prod(data_shape), math.prod(data_shape))


class Networks:
    @hookimpl
    def register_networks(self, register):
        register("forgetful-decoder", ForgetfulDecoder)
        register("plain-denoiser", PlainDenoiser)


def test_a_factory_missing_a_structural_argument_fails_at_build_naming_both(host):
    with registered_plugin(Networks(), "forgetful", host):
        refuse_forgetful_factories(host)


def refuse_forgetful_factories(host) -> None:
    recipe = Recipe({"data": {"name": "image:digits"}, "family": {"name": "core:vae"},
                     "networks": {"decoder": {"name": "forgetful:forgetful-decoder"}}},
                    "r.toml")
    info = DataInfo("image:image", (1, 8, 8), levels=17)
    with pytest.raises(RecipeError, match=r"\[networks.decoder\]: network "
                       r"forgetful:forgetful-decoder \(plugin forgetful\) takes no argument "
                       r"'param_channels', which every decoder network receives"):
        build_family(recipe, host.registry, info)
    recipe = Recipe({"data": {"name": "image:digits"}, "family": {"name": "core:diffusion"},
                     "condition": {"use": True},
                     "networks": {"denoiser": {"name": "forgetful:plain-denoiser"}}}, "r.toml")
    info = DataInfo("image:image", (1, 8, 8), levels=17, condition=CLASSES)
    with pytest.raises(RecipeError, match="takes no argument 'condition_dim', so it cannot "
                       "serve a conditional model"):
        build_family(recipe, host.registry, info)


def test_a_family_passing_a_declared_role_the_wrong_arguments_is_a_bug_named(host):
    from dgm.assembly import BuildContext, build_modality
    from dgm.contract import DECODER

    recipe = Recipe({"data": {"name": "image:digits"}}, "r.toml")
    info = DataInfo("image:image", (1, 8, 8), levels=17)
    ctx = BuildContext(recipe, host.registry, info, build_modality(info, host.registry))
    with pytest.raises(TypeError, match="role 'decoder' is built with data_shape, "
                       "latent_dim, param_channels; got unexpected size; missing "
                       "param_channels"):
        ctx.network(DECODER, data_shape=(1, 8, 8), latent_dim=4, size=3)
