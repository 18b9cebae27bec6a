"""Renamed config keys: one table (clika.app.checks.renames), read on the command line and in a composed config."""

import pytest
from omegaconf import OmegaConf

from clika.app.checks import check_group_choices, run_checks
from clika.app.checks.renames import RENAMED, RENAMES
from clika.app.compose import CONF, compose
from clika.util.errors import ClikaError


def test_the_table_covers_the_callback_s_suite():
    assert set(RENAMED) == {"clika.scorer", "callbacks.clika.suite.scorer"} and set(RENAMES) == {"clika.scorer"}
    assert RENAMED["callbacks.clika.suite.scorer"][0] == "callbacks.clika.suite.protocol"


@pytest.mark.parametrize("arg", ["clika.scorer=letter", "+clika.scorer=letter", "callbacks.clika.suite.scorer=x"])
def test_command_line(arg):
    with pytest.raises(ClikaError, match=r"scorer was renamed .*protocol") as e:
        check_group_choices([arg], CONF)
    assert "protocol=letter|cloze|paper" in e.value.fix


@pytest.mark.parametrize("app, key", [("eval", "clika"), ("train", "clika"), ("train", "callbacks.clika.suite")])
def test_composed_config(app, key, tmp_path):
    cfg = compose(app, [f"paths.clika_data={tmp_path}"])
    OmegaConf.set_struct(cfg, False)
    node = OmegaConf.select(cfg, key)
    if key == "callbacks.clika.suite":  # its own node instead of ${clika}
        OmegaConf.update(cfg, key, {**OmegaConf.to_container(node, resolve=True)}, merge=False)
        node = OmegaConf.select(cfg, key)
    node.scorer = "letter"
    with pytest.raises(ClikaError, match=f"^{key}.scorer was renamed {key}.protocol"):
        run_checks(cfg)
