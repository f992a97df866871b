"""``run.py --fetch`` against a real WebDAV server (wsgidav + cheroot) on 127.0.0.1.

The server serves miniature copies of the upstream shares built from the real-Caffe protocol
oracle in the upstream archive layout (``<folder>/models_test_is_K/caffenet_train_iter_N.caffemodel``,
``lmdb/Test_fold_is_K/<t>_test_lmdb``), below a wrapper folder, each at ``/<root>/<share token>/``.
A WSGI middleware records every request and cuts the first transfer of one file in the middle, so
the client has to resume it with ``Range``.  The table run over the fetched files must give the
oracle's expected values exactly as tests/test_protocol_oracle.py checks them.
"""
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from reproduce import fetch, grid, run
from conftest import assert_predictions_equal_caffes

wsgidav_app = pytest.importorskip("wsgidav.wsgidav_app", reason="wsgidav (test extra) is not installed")
wsgi = pytest.importorskip("cheroot.wsgi", reason="cheroot (test extra) is not installed")

REPO = Path(__file__).resolve().parent.parent
# oracle model folder -> the table cell it stands in for (both [i] models: plain lmdb/ and mean_image/)
MODELS = {"age_fromscratch_caffereference": (2, "i", "C"), "gender_net_definitions": (3, "i", "A")}
WRAPPER = "adience_models_v1"          # a top-level folder the share puts around everything
CUT_FILE = "gender_net_definitions/models_test_is_2/caffenet_train_iter_50000.caffemodel"
PROB_TOL = 1e-4


@pytest.fixture(scope="module")
def proto(oracle):
    """The protocol oracle as tests/conftest.py resolves it (the full set, or the mini set restored to the
    full layout): both cells' five folds, which these tests serve."""
    from conftest import need
    need(oracle, *(f"protocol/models/{m}/models_test_is_{k}/weights.caffemodel" for m in MODELS for k in range(5)))
    return oracle / "protocol"


def _final(folder):
    return grid.cell(*MODELS[folder]).final_iter


def build_share_roots(proto: Path, base: Path) -> None:
    """``base/full`` holds the complete shares; ``base/holey`` lacks fold 3 of the age model."""
    for root in ("full", "holey"):
        models = base / root / fetch.SHARE_TOKENS["weights"] / WRAPPER
        for folder in MODELS:
            (models / folder).mkdir(parents=True)
            shutil.copyfile(proto / "models" / folder / "deploy.prototxt", models / folder / "deploy.prototxt")
            for k in range(5):
                if root == "holey" and folder == "age_fromscratch_caffereference" and k == 3:
                    continue
                d = models / folder / f"models_test_is_{k}"
                d.mkdir()
                shutil.copyfile(proto / "models" / folder / f"models_test_is_{k}" / "weights.caffemodel",
                                d / f"caffenet_train_iter_{_final(folder)}.caffemodel")
                (d / "caffenet_train_iter_1000.solverstate").write_bytes(b"not needed by a table run")
                if folder == "gender_net_definitions":  # earlier snapshots for --source readme: 49000 in every
                    for it in (49000,) + ((48000,) if k != 2 else ()):  # fold, 48000 in all but fold 2
                        shutil.copyfile(d / f"caffenet_train_iter_{_final(folder)}.caffemodel",
                                        d / f"caffenet_train_iter_{it}.caffemodel")
        lmdbs = base / root / fetch.SHARE_TOKENS["lmdb"] / "Adience" / "lmdb"
        shutil.copytree(proto / "lmdb", lmdbs)
        for k in range(5):  # train/val LMDBs only for listing (--train --dry-run)
            for split in ("train", "val"):
                (lmdbs / f"Test_fold_is_{k}" / f"age_{split}_lmdb").mkdir()
                (lmdbs / f"Test_fold_is_{k}" / f"age_{split}_lmdb" / "data.mdb").write_bytes(b"x" * (1000 + k))
        init = base / root / fetch.SHARE_TOKENS["init"] / "startingpoint"
        init.mkdir(parents=True)
        shutil.copyfile(proto / "models" / "age_fromscratch_caffereference" / "models_test_is_0" / "weights.caffemodel",
                        init / "bvlc_reference_caffenet.caffemodel")


class Recorder:
    """WSGI middleware: logs (method, path, Range) and cuts the first GET of CUT_FILE after half its bytes."""

    def __init__(self, app):
        self.app = app
        self.log = []
        self.cut = {CUT_FILE}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        self.log.append((environ["REQUEST_METHOD"], path, environ.get("HTTP_RANGE")))
        body = self.app(environ, start_response)
        hit = [c for c in self.cut if path.endswith(c)]
        if environ["REQUEST_METHOD"] == "GET" and hit and not environ.get("HTTP_RANGE"):
            self.cut.discard(hit[0])
            return self._cut(body)
        return body

    @staticmethod
    def _cut(body):
        data = b"".join(body)
        if hasattr(body, "close"):
            body.close()
        yield data[: len(data) // 2]
        raise ConnectionAbortedError("test: connection dropped in the middle of the file")


@pytest.fixture(scope="module")
def server(proto, tmp_path_factory):
    base = tmp_path_factory.mktemp("shares")
    build_share_roots(proto, base)
    app = wsgidav_app.WsgiDAVApp({
        "provider_mapping": {"/": str(base)}, "simple_dc": {"user_mapping": {"*": True}},
        "verbose": 0, "logging": {"enable": False}, "property_manager": None, "lock_storage": None,
        "dir_browser": {"enable": False}})
    rec = Recorder(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = wsgi.Server(("127.0.0.1", port), rec, numthreads=4)
    srv.prepare()
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{port}", "log": rec.log, "base": base}
    srv.stop()
    thread.join(timeout=10)


def _run(argv, capsys):
    rc = run.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _table_argv(folder, remote, data, out, proto, *extra):
    table, row, col = MODELS[folder]
    return ["--table", str(table), "--row", row, "--col", col, "--fetch", "--remote", remote, "--data-dir",
            str(data), "--means", str(proto), "--out", str(out), "--no-progress", "--batch", "3",
            "--assets-mirror", str(out / "no-network"), *extra]


@pytest.fixture(scope="module")
def fetched(server, proto, tmp_path_factory):
    """Both oracle models fetched from the complete shares and scored: folder -> (cell record, out, stdout)."""
    data = tmp_path_factory.mktemp("data")
    res = {}
    for folder in MODELS:
        out = tmp_path_factory.mktemp(folder)
        rc = run.main(_table_argv(folder, server["url"] + "/full", data, out, proto))
        assert rc == 0
        (cell,) = json.loads((out / "results.json").read_text())["cells"]
        res[folder] = (cell, out)
    return data, res


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_fetched_table_run_reproduces_the_caffe_oracle(folder, proto, fetched):
    """The same checks as test_protocol_oracle.py, on inputs that came over WebDAV."""
    data, res = fetched
    cell, out = res[folder]
    exp = json.loads((proto / "expected.json").read_text())["results"][folder]
    assert cell["folder"] == folder
    assert assert_predictions_equal_caffes(out, folder, exp, atol=PROB_TOL) > 0
    keymap = {"acc": "acco", "one_off": "1offo", "acc_single": "acc", "one_off_single": "1off",
              "acc_centre": "acc_center", "one_off_centre": "1off_center"}
    assert len(cell["folds"]) == 5
    for f, ef in zip(cell["folds"], exp["folds"]):
        for ours, theirs in keymap.items():
            assert f[ours] == pytest.approx(ef["scores"][theirs], abs=1e-12)
        assert f["confmat"]["oversampled"] == ef["confmats"]["confmato"]
    for ours, theirs in keymap.items():
        assert cell["mean"][ours] == pytest.approx(exp["all_folds"][theirs]["mean"], abs=1e-12)
        assert cell["std"][ours] == pytest.approx(exp["all_folds"][theirs]["std_population"], abs=1e-12)
    assert cell["upstream_all"]["acc"] == exp["all_folds"]["acco"]["upstream_string"]
    assert cell["confmat"]["oversampled"] == exp["confmats_summed"]["confmato"]


@pytest.mark.parametrize("folder", sorted(MODELS))
def test_results_name_the_sha256_of_each_scored_weight_file(folder, proto, fetched):
    import hashlib
    _, res = fetched
    cell, _ = res[folder]
    for f in cell["folds"]:
        src = proto / "models" / folder / f"models_test_is_{f['fold']}" / "weights.caffemodel"
        assert f["weights_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_fetched_files_keep_the_upstream_layout_and_normal_modes(fetched, proto):
    data, _ = fetched
    for folder in MODELS:
        for k in range(5):
            got = data / "models" / folder / f"models_test_is_{k}" / f"caffenet_train_iter_{_final(folder)}.caffemodel"
            src = proto / "models" / folder / f"models_test_is_{k}" / "weights.caffemodel"
            assert got.read_bytes() == src.read_bytes()
            assert (got.stat().st_mode & 0o777) == 0o666 & ~_umask()
            assert not got.with_name(got.name + ".part").exists()
            # only what the run needs: no solverstates
            assert not list(got.parent.glob("*.solverstate"))
        assert (data / "models" / folder / "deploy.prototxt").read_bytes() == \
            (proto / "models" / folder / "deploy.prototxt").read_bytes()
    for k in range(5):
        for t in ("age", "gender"):  # both models were scored: both targets' [i] test LMDBs, nothing else
            lm = Path("lmdb") / f"Test_fold_is_{k}" / f"{t}_test_lmdb" / "data.mdb"
            assert (data / "lmdb" / lm).read_bytes() == (proto / lm).read_bytes()
    assert sorted(p.name for p in (data / "lmdb").iterdir()) == ["lmdb"]
    manifest = json.loads((data / "manifest.json").read_text())["files"]
    import hashlib
    for rel, rec in manifest.items():
        p = data / rel
        assert rec["size"] == p.stat().st_size
        assert rec["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert f"models/{CUT_FILE}" in manifest


def _umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_an_interrupted_transfer_is_resumed_with_range(fetched, server):
    gets = [(m, p, r) for m, p, r in server["log"] if m == "GET" and p.endswith(CUT_FILE)]
    assert gets[0][2] is None                       # first try: whole file, cut in the middle
    assert len(gets) == 2 and gets[1][2] and gets[1][2].startswith("bytes=") and gets[1][2] != "bytes=0-"


def test_a_second_run_downloads_nothing(fetched, server, proto, tmp_path, capsys):
    data, _ = fetched
    before = len([1 for m, *_ in server["log"] if m == "GET"])
    rc, out, err = _run(_table_argv("gender_net_definitions", server["url"] + "/full", data, tmp_path, proto), capsys)
    assert rc == 0, err
    assert "0 file(s) to download" in out and "already there and verified" in out
    assert len([1 for m, *_ in server["log"] if m == "GET"]) == before


def test_dry_run_lists_files_and_total_without_downloading(server, proto, tmp_path, capsys):
    data = tmp_path / "data"
    rc, out, err = _run(_table_argv("age_fromscratch_caffereference", server["url"] + "/full", data, tmp_path / "o",
                                    proto, "--dry-run"), capsys)
    assert rc == 0, err
    sizes = [(proto / "models" / "age_fromscratch_caffereference" / f"models_test_is_{k}" /
              "weights.caffemodel").stat().st_size for k in range(5)]
    sizes += [(proto / "lmdb" / f"Test_fold_is_{k}" / "age_test_lmdb" / "data.mdb").stat().st_size for k in range(5)]
    sizes.append((proto / "models" / "age_fromscratch_caffereference" / "deploy.prototxt").stat().st_size)
    assert f"{len(sizes)} file(s) to download, {fetch._human(sum(sizes))}" in out
    assert "caffenet_train_iter_50000.caffemodel" in out and "age_test_lmdb/data.mdb" in out
    assert "gender_test_lmdb" not in out and ".solverstate" not in out and "lock.mdb" not in out
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_fold_missing_from_the_share_is_named_with_where_it_was_looked_for(server, proto, tmp_path, capsys):
    rc, out, err = _run(_table_argv("age_fromscratch_caffereference", server["url"] + "/holey", tmp_path / "d",
                                    tmp_path / "o", proto), capsys)
    assert rc == 2
    assert "Traceback" not in err
    assert "age_fromscratch_caffereference/models_test_is_3/caffenet_train_iter_50000.caffemodel" in err
    assert f"/holey/{fetch.SHARE_TOKENS['weights']}/{WRAPPER}/age_fromscratch_caffereference/models_test_is_3/" in err
    assert "1 file(s) the run needs are not in the share" in err
    assert not (tmp_path / "d" / "models").exists()  # nothing downloaded before the plan is complete


def test_a_half_written_part_file_is_resumed(server, proto, tmp_path, capsys):
    data = tmp_path / "data"
    folder = "gender_net_definitions"
    src = proto / "models" / folder / "models_test_is_4" / "weights.caffemodel"
    rel = f"{folder}/models_test_is_4/caffenet_train_iter_{_final(folder)}.caffemodel"
    part = data / "models" / (rel + ".part")
    part.parent.mkdir(parents=True)
    blob = src.read_bytes()
    part.write_bytes(blob[:1000])
    # the .part was started from this very remote file (URL, size, ETag as the listing gives them)
    share = fetch.share("weights", server["url"] + "/full")
    entry = {e.name: e for e in share.listdir(f"{WRAPPER}/{folder}/models_test_is_4")}[Path(rel).name]
    Path(str(part) + ".json").write_text(json.dumps({"url": share.url(entry.path), "size": entry.size,
                                                     "etag": entry.etag}))
    n = len(server["log"])
    rc, out, err = _run(_table_argv(folder, server["url"] + "/full", data, tmp_path / "o", proto, "--folds", "4"),
                        capsys)
    assert rc == 0, err
    ranges = [r for m, p, r in server["log"][n:] if m == "GET" and p.endswith(rel)]
    assert ranges == ["bytes=1000-"]
    assert (data / "models" / rel).read_bytes() == blob


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_changed_or_truncated_file_is_reported_not_used(fetched, server, proto, tmp_path, capsys, damage):
    data0, _ = fetched
    data = tmp_path / "data"
    shutil.copytree(data0, data)
    folder = "gender_net_definitions"
    victim = data / "models" / folder / "models_test_is_1" / f"caffenet_train_iter_{_final(folder)}.caffemodel"
    blob = bytearray(victim.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x01
    else:
        blob = blob[:-10]
    victim.write_bytes(bytes(blob))
    # with --fetch
    rc, out, err = _run(_table_argv(folder, server["url"] + "/full", data, tmp_path / "o", proto), capsys)
    assert rc == 2
    assert str(victim) in err and ("changed since it was fetched" if damage == "flip" else "truncated") in err
    assert not (tmp_path / "o" / "results.json").exists()
    # and without --fetch, pointing --weights/--lmdb at the data folder
    table, row, col = MODELS[folder]
    rc, out, err = _run(["--table", str(table), "--row", row, "--col", col, "--lmdb", str(data / "lmdb"),
                         "--weights", str(data / "models"), "--means", str(proto), "--out", str(tmp_path / "o2"),
                         "--no-progress", "--assets-mirror", str(tmp_path / "no-network")], capsys)
    assert rc == 2
    assert str(victim) in err and "Traceback" not in err


def test_a_file_that_is_not_a_caffemodel_is_refused_before_the_run(server, proto, tmp_path, capsys):
    base = server["base"]
    folder = "gender_net_definitions"
    bad_root = base / "badmodel"
    shutil.copytree(base / "full", bad_root)
    victim = (bad_root / fetch.SHARE_TOKENS["weights"] / WRAPPER / folder / "models_test_is_0" /
              f"caffenet_train_iter_{_final(folder)}.caffemodel")
    victim.write_bytes(b"<html>Nextcloud: login required</html>")
    rc, out, err = _run(_table_argv(folder, server["url"] + "/badmodel", tmp_path / "d", tmp_path / "o", proto),
                        capsys)
    assert rc == 2
    assert "not a valid caffemodel" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()
    assert not list((tmp_path / "d").rglob("*.caffemodel"))


def test_remote_from_the_environment_and_missing_share(server, proto, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(fetch.ENV_REMOTE, server["url"] + "/nowhere")
    rc, out, err = _run(["--table", "3", "--row", "i", "--col", "A", "--fetch", "--dry-run", "--data-dir",
                         str(tmp_path), "--no-progress"], capsys)
    assert rc == 2
    assert f"{server['url']}/nowhere/{fetch.SHARE_TOKENS['weights']}/" in err and "Traceback" not in err


def test_default_remote_is_the_upstream_nextcloud_share():
    dav = fetch.share("lmdb", remote=None) if not os.environ.get(fetch.ENV_REMOTE) else None
    if dav is None:
        pytest.skip(f"${fetch.ENV_REMOTE} is set in this environment")
    assert dav.base_url == "https://datacloud.hhi.fraunhofer.de/public.php/webdav/"
    assert dav.user == "n6BLLnGPzinbe55"
    import base64
    assert dav.headers()["Authorization"] == "Basic " + base64.b64encode(b"n6BLLnGPzinbe55:").decode()


def test_train_needs_starting_points_and_train_val_test_lmdbs(server, tmp_path, capsys):
    rc, out, err = _run(["--train", "--table", "2", "--row", "i,n", "--col", "C", "--folds", "1", "--fetch",
                         "--dry-run", "--remote", server["url"] + "/full", "--data-dir", str(tmp_path / "d"),
                         "--out", str(tmp_path / "o"), "--no-progress"], capsys)
    assert rc == 0, err
    assert "init/bvlc_reference_caffenet.caffemodel" in out
    for split in ("train", "val", "test"):
        assert f"lmdb/lmdb/Test_fold_is_1/age_{split}_lmdb/data.mdb" in out
    assert "models/" not in out  # training writes the weights, it fetches none
    assert "Test_fold_is_0" not in out
    assert "4 file(s) to download" in out  # init + the train, val and test data.mdb (never lock.mdb)


def test_train_fetch_points_lmdb_and_init_at_the_data_folder(server, tmp_path):
    data = tmp_path / "d"
    args = run.build_parser().parse_args(
        ["--train", "--table", "2", "--row", "i,n", "--col", "C", "--folds", "2", "--fetch", "--remote",
         server["url"] + "/full", "--data-dir", str(data), "--out", str(tmp_path / "o"), "--no-progress"])
    assert fetch.prepare(args) is None
    assert Path(args.init) == data / "init" and (data / "init" / "bvlc_reference_caffenet.caffemodel").is_file()
    assert Path(args.lmdb) == data / "lmdb"
    assert (data / "lmdb" / "lmdb" / "Test_fold_is_2" / "age_val_lmdb" / "data.mdb").read_bytes() == b"x" * 1002
    assert args.weights is None  # training writes its snapshots to <out>/weights


def test_the_second_nextcloud_endpoint_is_tried_when_the_first_does_not_list(server, tmp_path, capsys,
                                                                              monkeypatch):
    """Default remote: the classic public.php/webdav (token as user) first, then public.php/dav/files/<token>."""
    monkeypatch.delenv(fetch.ENV_REMOTE, raising=False)
    monkeypatch.setattr(fetch, "NEXTCLOUD_ENDPOINTS", ((server["url"] + "/gone/", True),
                                                       (server["url"] + "/full/{token}/", False)))
    rc, out, err = _run(["--table", "3", "--row", "i", "--col", "A", "--folds", "0", "--fetch", "--dry-run",
                         "--data-dir", str(tmp_path), "--no-progress"], capsys)
    assert rc == 0, err
    assert f"from {server['url']}/full/{fetch.SHARE_TOKENS['weights']}/ (trained weights)" in out
    assert "gender_net_definitions/models_test_is_0/caffenet_train_iter_50000.caffemodel" in out


def test_the_missing_inputs_message_offers_fetch(tmp_path, capsys):
    rc, out, err = _run(["--table", "2", "--row", "m,w", "--out", str(tmp_path)], capsys)
    assert rc == 2
    assert "add --fetch to this command" in err and "--dry-run" in err


def test_source_readme_fetches_every_snapshot_all_folds_have(server, proto, tmp_path, capsys):
    rc, out, err = _run(_table_argv("gender_net_definitions", server["url"] + "/full", tmp_path / "d", tmp_path / "o",
                                    proto, "--source", "readme", "--dry-run"), capsys)
    assert rc == 0, err
    for k in range(5):
        for it in (49000, 50000):
            assert f"models_test_is_{k}/caffenet_train_iter_{it}.caffemodel" in out
    assert "iter_48000" not in out  # fold 2 lacks it: upstream's README figure needs every fold


def test_iter_fetches_that_snapshot_only(server, proto, tmp_path, capsys):
    rc, out, err = _run(_table_argv("gender_net_definitions", server["url"] + "/full", tmp_path / "d", tmp_path / "o",
                                    proto, "--iter", "48000", "--folds", "0,1", "--dry-run"), capsys)
    assert rc == 0, err
    assert "models_test_is_0/caffenet_train_iter_48000.caffemodel" in out
    assert "models_test_is_1/caffenet_train_iter_48000.caffemodel" in out
    assert "iter_50000" not in out and "iter_49000" not in out and "models_test_is_2" not in out


def test_a_changed_lmdb_is_reported_also_without_fetch(fetched, proto, tmp_path, capsys):
    data0, _ = fetched
    data = tmp_path / "data"
    shutil.copytree(data0, data)
    victim = data / "lmdb" / "lmdb" / "Test_fold_is_2" / "gender_test_lmdb" / "data.mdb"
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 0xFF
    victim.write_bytes(bytes(blob))
    rc, out, err = _run(["--table", "3", "--row", "i", "--col", "A", "--lmdb", str(data / "lmdb"), "--weights",
                         str(data / "models"), "--means", str(proto), "--out", str(tmp_path / "o"), "--no-progress",
                         "--assets-mirror", str(tmp_path / "no-network")], capsys)
    assert rc == 2
    assert str(victim) in err and "changed since it was fetched" in err and "Traceback" not in err


def test_files_put_there_by_hand_are_taken_when_their_size_matches_the_share(server, proto, tmp_path, capsys):
    data = tmp_path / "data"
    folder = "gender_net_definitions"
    rel = f"{folder}/models_test_is_0/caffenet_train_iter_{_final(folder)}.caffemodel"
    (data / "models" / rel).parent.mkdir(parents=True)
    shutil.copyfile(proto / "models" / folder / "models_test_is_0" / "weights.caffemodel", data / "models" / rel)
    n = len(server["log"])
    rc, out, err = _run(_table_argv(folder, server["url"] + "/full", data, tmp_path / "o", proto, "--folds", "0",
                                    "--dry-run"), capsys)
    assert rc == 0, err
    assert "1 already there and verified" in out and "(already there)" in out
    assert not [p for m, p, r in server["log"][n:] if m == "GET"]
    manifest = json.loads((data / "manifest.json").read_text())["files"]
    assert manifest[f"models/{rel}"]["source"] == "present before --fetch"
    # a hand-made copy of another size is reported, not overwritten and not used
    other = f"{folder}/models_test_is_1/caffenet_train_iter_{_final(folder)}.caffemodel"
    (data / "models" / other).parent.mkdir(parents=True)
    (data / "models" / other).write_bytes(b"partial copy")
    rc, out, err = _run(_table_argv(folder, server["url"] + "/full", data, tmp_path / "o", proto, "--folds", "0,1"),
                        capsys)
    assert rc == 2
    assert str(data / "models" / other) in err and "12 bytes" in err and "Traceback" not in err
    assert (data / "models" / other).read_bytes() == b"partial copy"
