"""Security: symlinks into the builder, escaping archive entries, remote model URLs,
the management API's address, and TLS for the inference API (tested for real, with
a self-signed certificate made by the ``openssl`` command line).
"""
import functools
import http.server
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import zipfile

import pytest
import requests
from PIL import Image

from mmsctl import cli
from mmsctl.archives import builder, mar, mxnet_checkpoint
from mmsctl.archives.errors import InvalidInput, UnsafeArchive
from mmsctl.client import PredictionError, predict
from mmsctl.config import profiles
from mmsctl.management import ManagementClient, check_model_url, url_under
from mmsctl.errors import UsageError
from mmsctl.files import read_regular

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


# -- the builder never follows symlinks out of the model folder ----------------------------
@pytest.fixture
def model_folder(tmp_path, resnet_checkpoint):
    """A model folder with copies of the checkpoint files, and a 'secret' folder beside it."""
    folder = tmp_path / "model"
    folder.mkdir()
    for key in ("symbol", "params", "synset"):
        shutil.copy(resnet_checkpoint[key], folder / os.path.basename(resnet_checkpoint[key]))
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "labels.txt").write_text("".join("stolen %d\n" % i for i in range(10)))
    return folder


def config_for(folder, **changes):
    values = dict(name="r18", symbol=str(folder / "resnet18-symbol.json"), params=str(folder / "resnet18-0000.params"),
                  synset=str(folder / "synset.txt"), export_path=str(folder.parent))
    values.update(changes)
    return mxnet_checkpoint.ResnetConfig(**values)


@pytest.mark.parametrize("option", ["symbol", "params", "synset"])
def test_builder_refuses_a_symlink_out_of_the_model_folder(model_folder, option):
    real = model_folder / {"symbol": "resnet18-symbol.json", "params": "resnet18-0000.params",
                           "synset": "synset.txt"}[option]
    outside = model_folder.parent / "secret" / real.name
    shutil.move(str(real), str(outside))
    real.symlink_to(outside)
    with pytest.raises(InvalidInput, match=r"--%s .* resolves to .*secret.*, outside its folder .*model.*"
                                           r"refusing to follow it" % option):
        mxnet_checkpoint.build(config_for(model_folder))
    assert not (model_folder.parent / "r18.mar").exists()


def test_builder_refuses_a_relative_symlink_climbing_out(model_folder):
    link = model_folder / "labels.txt"
    link.symlink_to(os.path.join("..", "secret", "labels.txt"))
    with pytest.raises(InvalidInput, match="outside its folder"):
        mxnet_checkpoint.build(config_for(model_folder, synset=str(link)))


def test_cli_archive_refuses_the_symlink(model_folder, capsys):
    link = model_folder / "labels.txt"
    link.symlink_to(model_folder.parent / "secret" / "labels.txt")
    code = cli.main(["archive", "resnet", "--name", "r18", "--symbol", str(model_folder / "resnet18-symbol.json"),
                     "--params", str(model_folder / "resnet18-0000.params"), "--synset", str(link),
                     "--export-path", str(model_folder.parent)])
    assert code == 1
    assert re.search(r"mmsctl: error: --synset .*labels.txt resolves to .*outside its folder", capsys.readouterr().err)


def test_symlink_inside_the_folder_is_followed(model_folder):
    link = model_folder / "labels-link.txt"
    link.symlink_to("synset.txt")  # a sibling: stays inside
    assert builder.check_inside_folder(str(link), "--synset") == str((model_folder / "synset.txt").resolve())
    assert builder.check_inside_folder(str(model_folder / "synset.txt"), "--synset")


# -- archives whose entries escape are refused by everything of ours that reads them -----------
def crafted_archive(path, name, symlink_target=None, create_system=3):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "evil"}}))
        info = zipfile.ZipInfo(name)
        info.create_system = create_system
        if symlink_target is not None:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, symlink_target)
        else:
            info.external_attr = 0o644 << 16
            archive.writestr(info, b"print('pwned')\n")
    with zipfile.ZipFile(path) as archive:  # the hostile name really is in the file
        assert name in archive.namelist()
    return str(path)


ESCAPING = {
    "absolute": ("/tmp/mmsctl-evil.py", None, r"absolute or Windows path"),
    "dotdot": ("../../mmsctl-evil.py", None, r"escapes the folder with '\.\.'"),
    "dotdot-inside": ("model/../../mmsctl-evil.py", None, r"escapes the folder with '\.\.'"),
    "backslash": ("..\\..\\mmsctl-evil.py", None, r"absolute or Windows path"),
    "drive-letter": ("C:/mmsctl-evil.py", None, r"absolute or Windows path"),
    "symlink": ("model/link", "/etc/passwd", r"is a symbolic link"),
    "symlink-relative": ("link", "../../..", r"is a symbolic link"),
    "symlink-non-unix-creator": ("link2", "/etc", r"is a symbolic link"),
}


@pytest.mark.parametrize("case", list(ESCAPING), ids=list(ESCAPING))
def test_escaping_entries_are_refused(tmp_path, case, capsys):
    name, target, message = ESCAPING[case]
    path = crafted_archive(tmp_path / "evil.mar", name, target,
                           create_system=0 if case == "symlink-non-unix-creator" else 3)
    with pytest.raises(UnsafeArchive, match=message):
        mar.describe(path)
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=message):
        mar.extract(path, str(out))
    assert not out.exists() or not any(out.iterdir())
    assert cli.main(["archive", "inspect", path]) == 1
    err = capsys.readouterr().err
    assert "mmsctl: error: archive entry" in err and "refusing to unpack it" in err


def test_a_clean_archive_still_inspects_and_extracts(model_store, tmp_path):
    path = os.path.join(model_store, "resnet18.mar")
    assert any(e["name"] == "signature.json" for e in mar.describe(path)["entries"])
    root = mar.extract(path, str(tmp_path / "out"))
    assert os.path.isfile(os.path.join(root, "mmsctl_handlers", "base.py"))


# -- register refuses remote URLs unless allowed ----------------------------------------------------
CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens; a refusal must come before any request


@pytest.mark.parametrize("url, allow", [
    ("https://models.example.com/resnet.mar", []),
    ("http://169.254.169.254/latest/meta-data", []),
    ("s3://bucket/model.mar", ["https://models.example.com/"]),
    ("https://models.example.com.evil.io/resnet.mar", ["https://models.example.com"]),
    ("https://models.example.com@evil.io/resnet.mar", ["https://models.example.com"]),
    ("https://models.example.com/team-b/x.mar", ["https://models.example.com/team-a"]),
    ("https://models.example.com/team-a/../team-b/x.mar", ["https://models.example.com/team-a/"]),
    ("http://models.example.com/x.mar", ["https://models.example.com/"]),
])
def test_register_refuses_remote_urls_not_allowed(url, allow, capsys):
    argv = ["register", url, "--management-url", CLOSED]
    for prefix in allow:
        argv += ["--allow-url", prefix]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing remote model URL %s: pass --allow-url PREFIX" % url in err
    assert "not reachable" not in err  # refused before any request was sent


def test_url_allow_list_matches_by_origin_and_path():
    assert url_under("https://models.example.com/team-a/x.mar", "https://models.example.com/team-a/")
    assert url_under("https://models.example.com/x.mar", "https://models.example.com")
    assert check_model_url("resnet18.mar") == "resnet18.mar"  # a model-store file needs no allow-list
    with pytest.raises(UsageError):
        check_model_url("https://models.example.com/x.mar")


# -- the management API stays on 127.0.0.1 ------------------------------------------------------
def all_profiles():
    for name in profiles.PROFILES:
        yield profiles.build_profile(name, vcpus=4, gpus=1 if name == "gpu" else 0)
        yield profiles.build_profile(name, vcpus=4, gpus=1 if name == "gpu" else 0, inference_host="0.0.0.0")


def test_every_profile_keeps_management_on_loopback(caplog):
    with caplog.at_level(logging.WARNING):
        for profile in all_profiles():
            assert profile.management_address.startswith("http://127.0.0.1:"), profile
            text = profiles.render_properties(profile)
            assert re.search(r"^management_address=http://127\.0\.0\.1:\d+$", text, re.M), text
    assert not caplog.records


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_cli_rendered_config_keeps_management_on_loopback(name, capsys):
    assert cli.main(["config", "render", "--profile", name, "--vcpus", "2", "--gpus", "1", "--public"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^inference_address=http://0\.0\.0\.0:8080$", text, re.M)
    assert re.search(r"^management_address=http://127\.0\.0\.1:8081$", text, re.M)


def test_opening_management_needs_the_option_and_warns(caplog, capsys):
    with caplog.at_level(logging.WARNING, logger="mmsctl.config.profiles"):
        assert cli.main(["config", "render", "--vcpus", "2", "--management-host", "0.0.0.0"]) == 0
    assert "management_address=http://0.0.0.0:8081" in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "management API is exposed on 0.0.0.0" in warnings[0]
    assert "no authentication" in warnings[0]


def shipped_files():
    """The files the repository ships: exactly what git tracks (never the state a
    quickstart or a server left in ignored folders: MMS leaves named pipes there, and
    open() on a pipe blocks)."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if listing.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [os.path.join(REPO, name) for name in listing.stdout.decode().split("\0") if name]


def test_no_shipped_file_opens_the_management_api():
    """Rendered configs, images and task definitions in the repository keep management on loopback."""
    pattern = re.compile(r"management_address\W{1,4}https?://(0\.0\.0\.0|\[::\])|MMS_MANAGEMENT_ADDRESS")
    offenders, scanned = [], 0
    for path in shipped_files():
        relative = os.path.relpath(path, REPO)
        if relative.startswith(("tests/", "docs/")) or not os.path.isfile(path):
            continue
        scanned += 1
        try:
            text = read_regular(path).decode("utf-8")
        except UnicodeDecodeError:  # binary
            continue
        if pattern.search(text):
            offenders.append(relative)
    assert scanned > 50, "only %d shipped files were scanned" % scanned
    assert not offenders, "management API opened in %s" % offenders


def test_shipped_configs_and_images_keep_management_on_loopback():
    tracked = [os.path.relpath(path, REPO) for path in shipped_files()]
    properties = [path for path in tracked if path.startswith("config/") and path.endswith(".properties")]
    assert {"config/cpu-latency.properties", "config/cpu-throughput.properties", "config/gpu.properties",
            "config/ei.properties"} <= set(properties)
    for path in properties:
        with open(os.path.join(REPO, path), encoding="utf-8") as handle:
            assert re.search(r"^management_address=http://127\.0\.0\.1:\d+$", handle.read(), re.M), path
    shipped = [path for path in tracked if path.startswith("docker/")]
    assert {"docker/Dockerfile.cpu", "docker/Dockerfile.gpu", "docker/Dockerfile.ei", "docker/ecs/taskdef.py"} <= set(shipped)
    for path in shipped:
        with open(os.path.join(REPO, path), encoding="utf-8", errors="replace") as handle:
            assert "--management-host" not in handle.read(), "%s opens the management API" % path


# -- TLS for the inference API ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed RSA key + certificate for 127.0.0.1, made by the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command line is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = str(folder / "key.pem"), str(folder / "cert.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    keystore = str(folder / "server.p12")
    subprocess.run([openssl, "pkcs12", "-export", "-inkey", key, "-in", cert, "-out", keystore,
                    "-passout", "pass:changeit-test"], check=True, capture_output=True, timeout=60)
    return {"key": key, "cert": cert, "keystore": keystore, "keystore_pass": "changeit-test"}


def test_tls_settings_render_and_validate(certificate):
    tls = profiles.TlsConfig(certificate_file=certificate["cert"], private_key_file=certificate["key"])
    profile = profiles.build_profile("cpu-latency", vcpus=2, tls=tls)
    text = profiles.render_properties(profile)
    assert "inference_address=https://127.0.0.1:8080" in text
    assert "private_key_file=%s" % certificate["key"] in text and "certificate_file=%s" % certificate["cert"] in text
    assert "management_address=http://127.0.0.1:8081" in text
    keystore = profiles.TlsConfig(keystore="/k.p12", keystore_pass="pw")
    assert profiles.tls_properties(keystore) == {"keystore": "/k.p12", "keystore_type": "PKCS12", "keystore_pass": "pw"}
    with pytest.raises(profiles.ProfileError, match="needs both --tls-cert"):
        profiles.build_profile("cpu-latency", vcpus=2, tls=profiles.TlsConfig(certificate_file=certificate["cert"]))
    with pytest.raises(profiles.ProfileError, match="not both"):
        profiles.build_profile("cpu-latency", vcpus=2, tls=profiles.TlsConfig(
            keystore="/k.p12", certificate_file=certificate["cert"], private_key_file=certificate["key"]))


def test_cli_renders_tls_with_absolute_paths(certificate, capsys, monkeypatch):
    folder, _ = os.path.split(certificate["cert"])
    monkeypatch.chdir(folder)  # relative paths on the command line; the server runs in its state folder
    assert cli.main(["config", "render", "--vcpus", "2", "--tls-cert", "cert.pem", "--tls-key", "key.pem"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^inference_address=https://127\.0\.0\.1:8080$", text, re.M)
    assert "certificate_file=%s\n" % certificate["cert"] in text and "private_key_file=%s\n" % certificate["key"] in text
    assert "--tls-cert %s --tls-key %s" % (certificate["cert"], certificate["key"]) in text  # the re-render command
    assert cli.main(["config", "render", "--vcpus", "2", "--tls-key", "key.pem"]) == 1
    assert "TLS needs both --tls-cert" in capsys.readouterr().err


@pytest.fixture(scope="module")
def own_store(tmp_path_factory, model_store):
    """A model store of this module's own: MMS writes downloaded archives into it."""
    folder = tmp_path_factory.mktemp("security_store")
    shutil.copy(os.path.join(model_store, "resnet18.mar"), folder / "resnet18.mar")
    return str(folder)


@pytest.fixture(scope="module")
def tls_server(servers, own_store, certificate):
    tls = profiles.TlsConfig(certificate_file=certificate["cert"], private_key_file=certificate["key"])
    return servers.start(own_store, {"resnet18": "resnet18.mar"}, tls=tls)


def test_prediction_over_https_with_the_certificate(tls_server, certificate, tmp_path, capsys):
    assert tls_server.inference_url.startswith("https://127.0.0.1:")
    image = tmp_path / "green.png"
    image.write_bytes(png_bytes())
    answer = predict(tls_server.inference_url, "resnet18", [str(image)], timeout=60, verify=certificate["cert"])
    assert len(answer) == 5 and set(answer[0]) == {"probability", "class"}
    assert cli.main(["predict", "--url", tls_server.inference_url, "--model", "resnet18", str(image),
                     "--cacert", certificate["cert"]]) == 0
    assert json.loads(capsys.readouterr().out) == answer


def test_https_refuses_untrusted_clients_and_plain_http(tls_server, tmp_path):
    image = tmp_path / "green.png"
    image.write_bytes(png_bytes())
    with pytest.raises(PredictionError, match=r"TLS with .* failed .*--cacert.*CERTIFICATE_VERIFY_FAILED"):
        predict(tls_server.inference_url, "resnet18", [str(image)], timeout=30)
    plain = tls_server.inference_url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.post(plain + "/predictions/resnet18", data=png_bytes(), timeout=30)


def test_https_from_a_pkcs12_keystore(servers, model_store, certificate):
    tls = profiles.TlsConfig(keystore=certificate["keystore"], keystore_pass=certificate["keystore_pass"])
    state = servers.start(model_store, {}, tls=tls)
    deadline = time.monotonic() + 60
    while True:
        try:
            response = requests.get(state.inference_url + "/ping", verify=certificate["cert"], timeout=5)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    assert response.status_code == 200 and response.json()["status"] == "Healthy"


# -- an allowed remote URL does reach MMS (served over loopback) ------------------------------------
@pytest.fixture
def archive_site(tmp_path, own_store):
    """A folder over plain HTTP on a loopback port (in a thread) holding resnet18-remote.mar.

    Its bytes differ from resnet18.mar (another description): MMS 1.1.11 unpacks
    identical bytes into one shared folder, see test_reliability.py.
    """
    with zipfile.ZipFile(os.path.join(own_store, "resnet18.mar")) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries[mar.MANIFEST_PATH])
    manifest["model"]["description"] = "served from a loopback site"
    entries[mar.MANIFEST_PATH] = json.dumps(manifest).encode()
    mar.write_mar(str(tmp_path / "resnet18-remote.mar"), entries)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % site.server_address[1]
    finally:
        site.shutdown()
        site.server_close()
        thread.join(10)


def test_register_allowed_remote_url(tls_server, archive_site, capsys):
    url = archive_site + "/resnet18-remote.mar"
    argv = ["register", url, "--name", "resnet18-remote", "--workers", "0", "--management-url",
            tls_server.management_url, "--allow-url", archive_site + "/"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    client = ManagementClient(tls_server.management_url)
    try:
        listed = {m["modelName"]: m["modelUrl"] for m in client.list()}
        assert listed["resnet18-remote"] == url
    finally:
        client.unregister("resnet18-remote")
