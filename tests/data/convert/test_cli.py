"""`gssim convert`: every registered converter loads; dataset errors are a message and exit
code 2, not a traceback."""
import pytest

from gssim.cli import main
from gssim.data.convert import CONVERTERS, converter


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_every_registered_converter_loads(name):
    assert callable(converter(name))


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="unknown dataset 'mydata'"):
        converter("mydata")
    with pytest.raises(SystemExit):
        main(["convert", "--from", "mydata", "src", "--scene", "x", "out"])


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_missing_source_is_a_message(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--from", name, str(tmp_path / "nowhere"), "--scene", "s1", str(tmp_path / "out"),
              "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gssim convert: ") and "Traceback" not in err
    assert not (tmp_path / "out" / "log.json").exists()
