"""docker/images.py: the pip settings a container build needs behind a proxy or a private index."""
import pytest

from mmsctl.docker import images


@pytest.mark.unit
def test_pip_build_arguments_carry_the_ca_and_mount_file_indexes(tmp_path):
    simple = tmp_path / "pypi" / "simple"
    simple.mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    cert = tmp_path / "ca.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    args = images.pip_build_arguments({"cert": str(cert), "find-links": str(wheels),
                                       "extra-index-url": "file://%s https://example.invalid/simple" % simple})
    assert ["--build-arg", "PIP_CERT=" + images.CONTAINER_CA] == args[:2]
    assert "%s:%s:ro" % (cert, images.CONTAINER_CA) in args
    assert "%s:%s:ro" % (tmp_path / "pypi", tmp_path / "pypi") in args
    assert "%s:%s:ro" % (wheels, wheels) in args
    assert "PIP_FIND_LINKS=%s" % wheels in args


@pytest.mark.unit
def test_pip_settings_reads_pips_environment_over_its_files(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example.invalid/simple")
    settings = images.pip_settings()
    assert settings["index-url"] == "https://pypi.example.invalid/simple"
    assert "PIP_INDEX_URL=https://pypi.example.invalid/simple" in images.pip_build_arguments(settings)
