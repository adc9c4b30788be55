"""The plugin author's guide in CONTRIBUTING.md names every hook with its current
signature, so the guide and hookspecs.py cannot drift apart."""

from __future__ import annotations

import inspect

from dgm import hookspecs
from tests.conftest import REPO


def hookspec_signatures() -> dict[str, str]:
    """Each hookspec as ``def name(arg: Annotation) -> Return``."""
    out = {}
    for name, func in vars(hookspecs).items():
        if callable(func) and hasattr(func, "dgm_spec"):
            sig = inspect.signature(func)
            params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
            out[name] = f"def {name}({params}) -> {sig.return_annotation}"
    return out


def test_every_hook_appears_in_the_guide_with_its_signature():
    guide = (REPO / "CONTRIBUTING.md").read_text()
    signatures = hookspec_signatures()
    assert len(signatures) >= 9
    missing = [sig for sig in signatures.values() if f"`{sig}`" not in guide]
    assert not missing, f"CONTRIBUTING.md lacks these hook signatures: {missing}"


def test_the_guide_names_the_hook_api_version_and_the_testing_kit():
    guide = (REPO / "CONTRIBUTING.md").read_text()
    assert "HOOK_API_VERSION" in guide and f"dgm_hook_api = {hookspecs.HOOK_API_VERSION}" \
        in guide
    assert "ModalityConformance" in guide and "dgm plugin new" in guide


def test_the_guide_carries_the_role_table_dgm_show_prints(host):
    from dgm.cli import role_table

    guide = (REPO / "CONTRIBUTING.md").read_text()
    start = guide.index("<!-- role table:")
    table = guide[guide.index("\n", start) + 1:guide.index("<!-- end of role table -->")]
    assert table.strip() == role_table(host.registry), (
        "CONTRIBUTING.md's role table differs from `dgm show --roles`: paste its output")
