"""The evaluation journal: records are atomic (a torn last line is not a finished set), a resume with another
evaluation's identity or another number of processes is refused in one line naming what differs."""

import pytest

from clika.scoring.journal import Journal
from clika.scoring.loglik import Result
from clika.util.errors import ClikaError

ID = {"model": {"name_or_path": "tiny", "dtype": "float32"}, "clika": {"protocol": "letter", "limit": 4}}


def test_finished_sets_come_back_and_a_torn_record_does_not(tmp_path):
    j = Journal(tmp_path, ID)
    j.record(("x_copa", "en"), [Result("1", 0, 0, [-0.5, -1.25]), Result("2", 1, 0, [-2.0, -0.1])])
    j.record(("x_copa", "zh"), [Result("1", 1, 1, [-3.0, -0.75], "B")])
    with open(j.path, "ab") as f:  # a kill in the middle of the third record
        f.write(b'{"key": "[\\"x_geo\\", \\"en\\"]", "results": [{"uid": "1", "pr')
    again = Journal(tmp_path, ID)
    assert again.done(("x_copa", "en")) == [Result("1", 0, 0, [-0.5, -1.25]), Result("2", 1, 0, [-2.0, -0.1])]
    assert again.done(("x_copa", "zh"))[0].output == "B" and again.done(("x_geo", "en")) is None
    assert again.resumed_items == 3
    again.close()
    assert not tmp_path.exists()


def test_a_fresh_start_forgets_the_old_journal(tmp_path):
    Journal(tmp_path, ID).record(("x_copa", "en"), [Result("1", 0, 0)])
    assert Journal(tmp_path, ID, resume=False).done(("x_copa", "en")) is None


@pytest.mark.parametrize("change, named", [
    ({"model": {"name_or_path": "other", "dtype": "float32"}}, "model.name_or_path: 'tiny' -> 'other'"),
    ({"clika": {"protocol": "paper", "limit": 4}}, "clika.protocol: 'letter' -> 'paper'"),
])
def test_resume_of_another_evaluation_is_refused_naming_the_keys(tmp_path, change, named):
    Journal(tmp_path, ID).record(("x_copa", "en"), [Result("1", 0, 0)])
    with pytest.raises(ClikaError) as e:
        Journal(tmp_path, {**ID, **change})
    assert named in str(e.value) and "output_dir" in e.value.fix and "\n" not in str(e.value)


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    Journal(tmp_path, ID, rank=0, world=2).record(("x_copa", "en"), [Result("1", 0, 0)])
    with pytest.raises(ClikaError, match="another number of processes"):
        Journal(tmp_path, ID, rank=0, world=1)
