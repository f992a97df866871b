"""Fetching the upstream files (reproduce.assets): checksums, resumable HTTP Range downloads,
atomic renames, plain-folder mirrors.  A local http.server on 127.0.0.1 serves the upstream folder:
the real one when present, else the synthetic stand-in with its own manifest (``upstream_tree``)."""
import http.server
import os
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from reproduce import assets
from reproduce.assets import AssetError, AssetStore, Manifest

DEPLOY = "model_definitions/age_net_definitions/deploy.prototxt"
MEAN = "mean_images/mean_image_unaligned/Test_fold_is_3/mean.binaryproto"
LIST = "folds/squared_unaligned_train_val_txt_files_per_fold/test_fold_is_1/gender_test.txt"
SYNSET = "heatmap_drawing/synset_age.txt"


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single ``bytes=N-`` ranges; can cut the first response of a file short."""
    log = None  # list of (path, range header)
    cut = None  # set of paths whose next response is interrupted halfway

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        rel = self.path.lstrip("/")
        self.log.append((rel, self.headers.get("Range")))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = Path(path).read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if rel in self.cut:
            self.cut.discard(rel)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path_factory):
    """Factory: serve a folder, return (base URL, request log, cut set)."""
    servers = []

    def start(folder):
        log, cut = [], set()
        handler = type("H", (RangeHandler,), {"log": log, "cut": cut})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}", log, cut

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def small_manifest(paths=(DEPLOY, MEAN, LIST, SYNSET), source=None):
    full = Manifest.load(source)
    data = {"repository": full.repository, "commit": full.commit, "url_template": full.url_template,
            "layout": full.layout, "files": [vars(full[p]) for p in paths]}
    return Manifest(data)


def store(root, mirror, **kw):
    return AssetStore(root, mirror, progress=False, manifest=kw.pop("manifest", small_manifest()), **kw)


@pytest.fixture
def pinned(upstream_pins):
    """(upstream folder, store factory pinned to its manifest); the manifest is in force for run.py too."""
    def make(root, mirror, **kw):
        return store(root, mirror, manifest=small_manifest(source=upstream_pins.manifest), **kw)
    return upstream_pins.root, make


def test_manifest_pins_the_commit_and_maps_upstream_folders_to_local_ones():
    m = Manifest.load(assets.MANIFEST_PATH)
    assert m.commit == "5bc05b96d9c48a2cb6752a3bc59a74f21d9a5b97"
    assert m.local_relpath(DEPLOY) == "prototxt/age_net_definitions/deploy.prototxt"
    assert m.local_relpath(SYNSET) == "prototxt/synsets/synset_age.txt"
    assert m.local_relpath(MEAN) == MEAN and m.local_relpath(LIST) == LIST
    assert m.url_template.format(path=DEPLOY).startswith(
        "https://raw.githubusercontent.com/sebastian-lapuschkin/understanding-age-gender-deep-learning-models/"
        "5bc05b96d9c48a2cb6752a3bc59a74f21d9a5b97/model_definitions/")
    with pytest.raises(AssetError, match="no local folder"):
        m.local_relpath("README.md")


def test_manifest_lists_every_upstream_data_file_with_its_checksum(upstream):
    """A fact of the real files (their list, sizes and sha256): upstream only."""
    m = Manifest.load(assets.MANIFEST_PATH)
    on_disk = sorted(p.relative_to(upstream).as_posix() for p in upstream.rglob("*") if p.is_file())
    assert sorted(m.files) == on_disk and len(on_disk) == 565
    for rel in on_disk:
        a = m[rel]
        assert (upstream / rel).stat().st_size == a.size
    for rel in (DEPLOY, MEAN, LIST, SYNSET):  # hashing all 70 MB is left to test_fetch_all
        assert assets.sha256_file(upstream / rel) == m[rel].sha256


def test_fetch_over_http_verifies_and_places_files(pinned, server, tmp_path):
    upstream, store = pinned
    url, log, _ = server(upstream)
    s = store(tmp_path, url)
    deploy = s.deploy("age_net_definitions")  # lazy: only this file
    assert deploy == tmp_path / "prototxt" / "age_net_definitions" / "deploy.prototxt"
    assert deploy.read_bytes() == (upstream / DEPLOY).read_bytes()
    assert [p for p, _ in log] == [DEPLOY]
    mean = s.mean("r", 3)
    assert mean.read_bytes() == (upstream / MEAN).read_bytes()
    assert s.fold_list("r", 1, "gender").read_bytes() == (upstream / LIST).read_bytes()
    assert s.synset("age").read_bytes() == (upstream / SYNSET).read_bytes()
    # already valid: nothing fetched again, no .part left behind
    n = len(log)
    s2 = store(tmp_path, url)
    s2.ensure([DEPLOY, MEAN, LIST, SYNSET])
    assert len(log) == n
    assert not list(tmp_path.rglob("*.part"))


def test_corrupt_source_gives_a_clear_error_and_leaves_nothing(pinned, server, tmp_path):
    upstream, store = pinned
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream / "model_definitions" / "age_net_definitions",
                    mirror / "model_definitions" / "age_net_definitions")
    f = mirror / DEPLOY
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    url, _, _ = server(mirror)
    root = tmp_path / "root"
    with pytest.raises(AssetError, match=r"deploy\.prototxt: checksum mismatch .*expected .*sha256"):
        store(root, url).deploy("age_net_definitions")
    dest = root / "prototxt" / "age_net_definitions" / "deploy.prototxt"
    assert not dest.exists() and not dest.with_name("deploy.prototxt.part").exists()
    # the same through a plain-folder mirror
    with pytest.raises(AssetError, match="checksum mismatch"):
        store(root, str(mirror)).deploy("age_net_definitions")
    assert not dest.exists()


def test_missing_file_on_server_is_reported(tmp_path, server):
    (tmp_path / "empty").mkdir()
    url, _, _ = server(tmp_path / "empty")
    with pytest.raises(AssetError, match="HTTP 404"):
        store(tmp_path / "root", url).deploy("age_net_definitions")


def test_interrupted_download_resumes_with_range(pinned, server, tmp_path):
    upstream, store = pinned
    url, log, cut = server(upstream)
    cut.add(MEAN)  # the first response stops halfway through the file
    s = store(tmp_path, url)
    path = s.mean("r", 3)
    assert path.read_bytes() == (upstream / MEAN).read_bytes()
    requests = [r for p, r in log if p == MEAN]
    size = (upstream / MEAN).stat().st_size
    assert requests == [None, f"bytes={size // 2}-"]


def test_partial_file_from_an_earlier_run_is_resumed(pinned, server, tmp_path):
    upstream, store = pinned
    url, log, _ = server(upstream)
    dest = tmp_path / MEAN
    dest.parent.mkdir(parents=True)
    data = (upstream / MEAN).read_bytes()
    dest.with_name("mean.binaryproto.part").write_bytes(data[:300000])
    store(tmp_path, url).mean("r", 3)
    assert dest.read_bytes() == data
    assert log == [(MEAN, "bytes=300000-")]


def test_stale_partial_file_is_discarded_after_a_checksum_failure(pinned, server, tmp_path):
    upstream, store = pinned
    url, log, _ = server(upstream)
    dest = tmp_path / MEAN
    dest.parent.mkdir(parents=True)
    dest.with_name("mean.binaryproto.part").write_bytes(b"\0" * 1000)  # wrong bytes
    store(tmp_path, url).mean("r", 3)
    assert dest.read_bytes() == (upstream / MEAN).read_bytes()
    assert log == [(MEAN, "bytes=1000-"), (MEAN, None)]


def test_plain_folder_and_file_url_mirrors(pinned, tmp_path):
    upstream, store = pinned
    s = store(tmp_path / "a", str(upstream))
    assert s.deploy("age_net_definitions").read_bytes() == (upstream / DEPLOY).read_bytes()
    s = store(tmp_path / "b", upstream.as_uri())
    assert s.synset("age").read_bytes() == (upstream / SYNSET).read_bytes()
    with pytest.raises(AssetError, match="not found in the mirror"):
        store(tmp_path / "c", str(tmp_path / "nowhere")).deploy("age_net_definitions")


def test_env_var_mirror_and_locally_corrupted_file_is_fetched_again(upstream_pins, tmp_path, monkeypatch, capsys):
    """The mirror, the root and (for the stand-in) the manifest come from the environment."""
    upstream = upstream_pins.root
    monkeypatch.setenv(assets.ENV_MIRROR, str(upstream))
    monkeypatch.setenv(assets.ENV_ROOT, str(tmp_path))
    s = AssetStore(progress=False)
    assert s.root == tmp_path and s.mirror == str(upstream) and s.manifest.source == str(upstream_pins.manifest)
    path = s.deploy("age_net_definitions")
    path.write_text("edited")
    s2 = AssetStore(progress=False)
    assert s2.deploy("age_net_definitions").read_bytes() == (upstream / DEPLOY).read_bytes()
    assert "does not match the upstream sha256" in capsys.readouterr().err


def test_unknown_asset_is_an_error(tmp_path):
    with pytest.raises(AssetError, match="not an upstream file"):
        store(tmp_path, None).deploy("age_nonexistent")


def test_manifest_from_the_environment_and_a_bad_one_named(tmp_path, monkeypatch):
    data = {"repository": "x/y", "commit": "c", "url_template": "u/{path}", "layout": {"folds/": "folds/"},
            "files": [{"path": "folds/a.txt", "size": 1, "sha256": "0" * 64}]}
    (tmp_path / "m.json").write_text(__import__("json").dumps(data))
    monkeypatch.setenv(assets.ENV_MANIFEST, str(tmp_path / "m.json"))
    m = Manifest.load()
    assert list(m.files) == ["folds/a.txt"] and m.source == str(tmp_path / "m.json")
    with pytest.raises(AssetError, match=r"folds/b\.txt: not an upstream file listed in .*m\.json"):
        m["folds/b.txt"]
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(AssetError, match=r"m\.json: not a readable upstream manifest"):
        Manifest.load()
    monkeypatch.delenv(assets.ENV_MANIFEST)
    assert Manifest.load().source == str(assets.MANIFEST_PATH)


def test_run_fetch_assets_gets_everything_from_a_mirror(upstream_pins, tmp_path, capsys):
    from reproduce.run import main
    upstream = upstream_pins.root
    n = len(Manifest.load().files)  # the real manifest's 565 files, or the stand-in's
    assert n == (upstream_pins.facts["n_files"] if upstream_pins.synthetic else 565)
    rc = main(["--fetch-assets", "--assets-mirror", str(upstream), "--assets-dir", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    assert f"{n} upstream files verified" in capsys.readouterr().out
    m = Manifest.load()
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == n
    for rel in (DEPLOY, "folds/original_txt_files/fold_4_data.txt"):
        assert (tmp_path / m.local_relpath(rel)).read_bytes() == (upstream / rel).read_bytes()
