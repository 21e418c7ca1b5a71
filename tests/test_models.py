"""The model contract: each family declares what it can do, and tools ask that, never the family's name."""

import re
from pathlib import Path

from genlab import AE, DBVAE, GAN, VAE, AEConfig, DBVAEConfig, GANConfig, VAEConfig
from genlab.models import base


def test_each_family_declares_its_capabilities():
    shape = (1, 8, 8)
    assert AE(AEConfig(shape)).capabilities == {base.GENERATES, base.ENCODES, base.VALIDATES, base.RECONSTRUCTS}
    assert VAE(VAEConfig(shape)).capabilities == {base.GENERATES, base.ENCODES, base.VALIDATES, base.POSTERIOR,
                                                  base.DENSITY}
    assert DBVAE(DBVAEConfig(shape)).capabilities == VAE.capabilities | {base.CLASSIFIES, base.REWEIGHTS}
    assert GAN(GANConfig(shape)).capabilities == {base.GENERATES}
    assert GAN(GANConfig(shape, conditional=True, num_classes=3)).capabilities == {base.GENERATES,
                                                                                   base.CONDITIONAL}


def test_no_tool_asks_a_model_what_it_is():
    root = Path(__file__).parents[1] / "src" / "genlab"
    probe = re.compile(r"hasattr\((run\.)?model|\.family ?[!=]=|family ?[!=]= ?\"")
    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.parent.name != "models"
             for i, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert found == []


def test_the_trainer_imports_nothing_above_it():
    """Dependencies point one way: the training loop never reaches up to the report or the tools that use it."""
    import ast

    root = Path(__file__).parents[1] / "src" / "genlab"
    tree = ast.parse((root / "train.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {f"genlab.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "genlab" for a in node.names}
    assert not imported & {"genlab.report", "genlab.debias", "genlab.outliers", "genlab.cli"}, imported
